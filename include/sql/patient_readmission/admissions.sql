-- Silver admissions, de-identified: the medical record number (MRN) is replaced by a pseudonymous patient_key, a
-- salted SHA-256 whose secret is the parameter :pseudonym_salt, bound by Spark from the Airflow Variable
-- `asgard_pseudonym_secret` (the stage's `parameters_from:`): it never appears in this file, the rendered SQL or the logs.
-- Bronze never holds the patients' names, SSNs, birth dates, addresses or phones: the ingest copies only the
-- listed columns. Each admission carries its patient's sex and insurance and its lab results' counts.
-- Rows breaking a rule are tagged in _rejected_reason and go to silver.admissions_quarantine (also keyed by
-- patient_key only), so bronze.admissions = silver.admissions + its quarantine.
WITH patients AS (
    SELECT
        TRIM(mrn) AS mrn,
        UPPER(TRIM(sex)) AS sex,
        LOWER(TRIM(insurance_type)) AS insurance_type
    FROM iceberg.bronze.patients
),

labs AS (
    SELECT
        CAST(admission_id AS BIGINT) AS admission_id,
        COUNT(*) AS labs_taken,
        SUM(CASE WHEN UPPER(TRIM(abnormal_flag)) IN ('H', 'L') THEN 1 ELSE 0 END) AS abnormal_labs
    FROM iceberg.bronze.lab_results
    GROUP BY CAST(admission_id AS BIGINT)
),

typed AS (
    SELECT
        CAST(admission_id AS BIGINT) AS admission_id,
        TRIM(mrn) AS mrn,
        -- Timestamps are UTC wall-clock time (the session time zone is UTC); unparseable text becomes NULL.
        CAST(TRY_CAST(admit_ts AS TIMESTAMP) AS TIMESTAMP_NTZ) AS admit_ts,
        CAST(TRY_CAST(discharge_ts AS TIMESTAMP) AS TIMESTAMP_NTZ) AS discharge_ts,
        LOWER(TRIM(admission_type)) AS admission_type,
        LOWER(TRIM(primary_diagnosis)) AS primary_diagnosis,
        CAST(age_at_admission AS INT) AS age_at_admission,
        CAST(num_procedures AS INT) AS num_procedures,
        CAST(num_medications AS INT) AS num_medications,
        LOWER(TRIM(discharge_disposition)) AS discharge_disposition
    FROM iceberg.bronze.admissions
),

events AS (
    SELECT
        t.*,
        p.mrn AS known_mrn,
        p.sex,
        p.insurance_type,
        -- The EMR re-delivers some admissions: one copy is kept.
        ROW_NUMBER() OVER (PARTITION BY t.admission_id ORDER BY t.discharge_ts DESC NULLS LAST, t.mrn) AS copy_rank
    FROM typed AS t
    LEFT JOIN patients AS p ON p.mrn = t.mrn
)

SELECT
    e.admission_id,
    CASE WHEN e.mrn IS NOT NULL THEN SHA2(CONCAT(:pseudonym_salt, ':', e.mrn), 256) END
        AS patient_key,
    e.admit_ts,
    e.discharge_ts,
    e.admission_type,
    e.primary_diagnosis,
    e.age_at_admission,
    e.num_procedures,
    e.num_medications,
    e.discharge_disposition,
    e.sex,
    e.insurance_type,
    COALESCE(l.labs_taken, 0) AS labs_taken,
    COALESCE(l.abnormal_labs, 0) AS abnormal_labs,
    CASE
        WHEN e.admission_id IS NULL THEN 'null_admission_id'
        WHEN e.mrn IS NULL THEN 'null_mrn'
        WHEN e.known_mrn IS NULL THEN 'unknown_patient'
        WHEN e.admit_ts IS NULL OR e.discharge_ts IS NULL THEN 'invalid_timestamp'
        WHEN e.discharge_ts < e.admit_ts THEN 'discharge_before_admission'
        WHEN e.copy_rank > 1 THEN 'duplicate'
    END AS _rejected_reason
FROM events AS e
LEFT JOIN labs AS l ON l.admission_id = e.admission_id
