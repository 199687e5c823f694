{#
  One row per admission discharged up to the end of the `as_of` day, keyed by admission_id and the pseudonymous
  patient_key only: clinical features known at discharge, the patient's admission history before this admission,
  and the label `readmitted_30d` = the patient's next admission starts within `readmission_days` of the discharge.
  Discharges of the last `readmission_days` are unlabelled (NULL): their outcome is still open. Admissions
  discharged on `as_of` are the ones batch inference scores. The whole table is rebuilt every run.
#}
{{ config(
    materialized=asgard_gold_materialization(),
    plugin='asgard_iceberg',
    format='parquet',
    location=(target.external_root | default('.')) ~ '/admission_features-' ~ invocation_id ~ '.parquet',
    iceberg_table='gold.admission_features',
    iceberg_partition_by=['discharge_date'],
    incremental_strategy='delete+insert',
    unique_key='admission_id',
    properties={'partitioning': "ARRAY['discharge_date']"},
) }}

{%- set as_of = asgard_as_of() -%}
{%- set as_of_date = "cast('" ~ as_of ~ "' as date)" -%}
{%- set days = var('readmission_days') | int -%}
{%- set prior_seconds = (var('prior_window_days') | int) * 86400 -%}

with admissions as (
    select
        *,
        {{ dbt.datediff("cast('1970-01-01' as timestamp)", 'admit_ts', 'second') }} as admit_epoch
    from {{ source('silver', 'admissions') }}
    where cast(discharge_ts as date) <= {{ as_of_date }}
),

history as (
    select
        *,
        count(*) over (
            partition by patient_key order by admit_epoch
            range between {{ prior_seconds }} preceding and 1 preceding
        ) as prior_admissions,
        lag(discharge_ts) over (partition by patient_key order by admit_ts, admission_id) as previous_discharge_ts,
        lead(admit_ts) over (partition by patient_key order by admit_ts, admission_id) as next_admit_ts,
        min(admit_ts) over () as first_admit_ts
    from admissions
)

select
    admission_id,
    patient_key,
    cast(discharge_ts as date) as discharge_date,
    cast(discharge_ts as timestamp) as feature_timestamp,
    cast(age_at_admission as bigint) as age_at_admission,
    cast({{ dbt.datediff('admit_ts', 'discharge_ts', 'hour') }} / 24.0 as double) as length_of_stay_days,
    cast(num_procedures as bigint) as num_procedures,
    cast(num_medications as bigint) as num_medications,
    cast(labs_taken as bigint) as labs_taken,
    cast(abnormal_labs as bigint) as abnormal_labs,
    cast(prior_admissions as bigint) as prior_admissions,
    -- A first admission has no previous discharge: a year stands in for "long ago".
    cast(coalesce({{ dbt.datediff('previous_discharge_ts', 'admit_ts', 'day') }}, 365) as bigint)
        as days_since_last_discharge,
    cast(case when admission_type = 'emergency' then 1 else 0 end as bigint) as is_emergency,
    cast(case when primary_diagnosis = 'heart_failure' then 1 else 0 end as bigint) as dx_heart_failure,
    cast(case when primary_diagnosis = 'copd' then 1 else 0 end as bigint) as dx_copd,
    cast(case when primary_diagnosis = 'sepsis' then 1 else 0 end as bigint) as dx_sepsis,
    cast(case when discharge_disposition = 'against_medical_advice' then 1 else 0 end as bigint)
        as discharged_against_advice,
    cast(case when discharge_disposition = 'skilled_nursing' then 1 else 0 end as bigint) as discharged_to_nursing,
    cast(case
        when cast(discharge_ts as date) >= {{ dbt.dateadd('day', -days, as_of_date) }} then null
        when next_admit_ts is not null and next_admit_ts < {{ dbt.dateadd('day', days, 'discharge_ts') }} then 1
        else 0
    end as integer) as readmitted_30d
from history
where admit_ts >= {{ dbt.dateadd('day', var('warmup_days') | int, 'first_admit_ts') }}
