-- Silver customers: the latest version of each customer, cleaned and typed.
-- Rows breaking a rule are tagged in _rejected_reason (and go to the quarantine table) instead of being dropped,
-- so bronze.customers = silver.customers_cleaned + silver.customers_cleaned_quarantine.
WITH typed AS (
    SELECT
        CAST(customer_id AS BIGINT) AS customer_id,
        LOWER(TRIM(email)) AS email,
        COALESCE(first_name, 'Unknown') AS first_name,
        last_name,
        CAST(registration_date AS DATE) AS registration_date,
        CASE
            WHEN LOWER(TRIM(status)) IN ('active', 'premium') THEN LOWER(TRIM(status))
            ELSE 'inactive'
        END AS status,
        UPPER(TRIM(country)) AS country,
        city,
        -- Timestamps are stored without time zone, as UTC wall-clock time (the session time zone is UTC).
        CAST(CAST(created_at AS TIMESTAMP) AS TIMESTAMP_NTZ) AS created_at,
        CAST(CAST(updated_at AS TIMESTAMP) AS TIMESTAMP_NTZ) AS updated_at
    FROM iceberg.bronze.customers
),

versions AS (
    SELECT
        *,
        -- The customer database keeps stale versions of some customers: the latest update wins.
        ROW_NUMBER() OVER (
            PARTITION BY customer_id
            ORDER BY updated_at DESC NULLS LAST, created_at DESC NULLS LAST, email, status, country, city
        ) AS version_rank
    FROM typed
)

SELECT
    customer_id,
    email,
    first_name,
    last_name,
    registration_date,
    status,
    country,
    city,
    created_at,
    CAST(current_timestamp() AS TIMESTAMP_NTZ) AS processed_at,
    CASE
        WHEN customer_id IS NULL THEN 'null_customer_id'
        WHEN email IS NULL OR email NOT LIKE '%@%.%' THEN 'invalid_email'
        WHEN registration_date IS NULL THEN 'invalid_registration_date'
        WHEN registration_date < DATE'2020-01-01' THEN 'registered_before_2020'
        WHEN version_rank > 1 THEN 'duplicate'
    END AS _rejected_reason
FROM versions
