{#
  One row per (customer, snapshot): behaviour features computed from data strictly before the snapshot date,
  and the label `churned` = no completed purchase in [snapshot, snapshot + horizon).

  Each run rebuilds two snapshots: `as_of` (features only: its future is unknown, churned is NULL; batch
  inference scores it) and `as_of - horizon` (now fully labelled: training reads it). Those two snapshot_date
  partitions are replaced in one commit, so reruns and backfills never duplicate rows.
#}
{{ config(
    materialized=asgard_gold_materialization(),
    plugin='asgard_iceberg',
    format='parquet',
    location=(target.external_root | default('.')) ~ '/customer_metrics-' ~ invocation_id ~ '.parquet',
    iceberg_table='gold.customer_metrics',
    iceberg_partition_by=['snapshot_date'],
    iceberg_replace_column='snapshot_date',
    incremental_strategy='delete+insert',
    unique_key='snapshot_date',
    properties={'partitioning': "ARRAY['snapshot_date']"},
) }}

{%- set as_of = asgard_as_of() -%}
{%- set horizon = var('label_horizon_days') | int -%}
{%- set as_of_date = "cast('" ~ as_of ~ "' as date)" -%}

with snapshots as (
    select {{ as_of_date }} as snapshot_date, cast(null as date) as label_until
    union all
    select
        cast({{ dbt.dateadd('day', -horizon, as_of_date) }} as date) as snapshot_date,
        {{ as_of_date }} as label_until
),

customers as (
    select customer_id, registration_date, country, status
    from {{ source('silver', 'customers_cleaned') }}
),

transactions as (
    -- Amounts stay decimal: exact sums, so a rerun reproduces every value bit for bit whatever the thread count.
    select customer_id, transaction_date, amount
    from {{ source('silver', 'transactions_cleaned') }}
),

tickets as (
    select
        customer_id,
        created_at,
        resolution_time_hours,
        {{ dbt.dateadd('minute', 'cast(round(resolution_time_hours * 60) as integer)', 'created_at') }} as resolved_at
    from {{ source('silver', 'support_tickets_cleaned') }}
),

-- Customers who had registered before the snapshot.
population as (
    select s.snapshot_date, s.label_until, c.customer_id, c.registration_date, c.country, c.status
    from snapshots as s
    inner join customers as c on c.registration_date < s.snapshot_date
),

history as (
    select
        s.snapshot_date,
        t.customer_id,
        count(*) as total_purchases,
        sum(t.amount) as customer_lifetime_value,
        avg(t.amount) as avg_purchase_value,
        max(t.transaction_date) as last_purchase_date,
        min(t.transaction_date) as first_purchase_date
    from snapshots as s
    inner join transactions as t on t.transaction_date < s.snapshot_date
    group by s.snapshot_date, t.customer_id
),

future as (
    select s.snapshot_date, t.customer_id, count(*) as future_purchases
    from snapshots as s
    inner join transactions as t
        on t.transaction_date >= s.snapshot_date
        and t.transaction_date < s.label_until
    group by s.snapshot_date, t.customer_id
),

support as (
    select
        s.snapshot_date,
        k.customer_id,
        count(*) as support_tickets,
        -- Only tickets resolved before the snapshot have a known resolution time at that point.
        avg(
            case
                when k.resolved_at < cast(s.snapshot_date as timestamp)
                    then cast(k.resolution_time_hours as decimal(14, 4))
            end
        ) as avg_support_resolution_hours
    from snapshots as s
    inner join tickets as k on k.created_at < cast(s.snapshot_date as timestamp)
    group by s.snapshot_date, k.customer_id
)

select
    p.customer_id,
    p.snapshot_date,
    cast(p.snapshot_date as timestamp) as feature_timestamp,
    cast(coalesce(h.total_purchases, 0) as bigint) as total_purchases,
    cast(coalesce(h.customer_lifetime_value, 0) as double) as customer_lifetime_value,
    cast(coalesce(h.avg_purchase_value, 0) as double) as avg_purchase_value,
    -- Never bought: days since registration (the customer has been inactive that long).
    cast({{ dbt.datediff('coalesce(h.last_purchase_date, p.registration_date)', 'p.snapshot_date', 'day') }} as bigint)
        as days_since_last_purchase,
    -- Purchases per 30 days since the first purchase.
    cast(case
        when h.total_purchases is null then 0
        else h.total_purchases * 30.0 / greatest({{ dbt.datediff('h.first_purchase_date', 'p.snapshot_date', 'day') }}, 1)
    end as double) as purchase_frequency,
    cast({{ dbt.datediff('p.registration_date', 'p.snapshot_date', 'day') }} as bigint) as account_age_days,
    cast(coalesce(k.support_tickets, 0) as bigint) as support_tickets,
    cast(coalesce(k.avg_support_resolution_hours, 0) as double) as avg_support_resolution_hours,
    p.country,
    p.status,
    cast(case
        when p.label_until is null then null
        when f.future_purchases is null then 1
        else 0
    end as integer) as churned
from population as p
left join history as h on h.snapshot_date = p.snapshot_date and h.customer_id = p.customer_id
left join future as f on f.snapshot_date = p.snapshot_date and f.customer_id = p.customer_id
left join support as k on k.snapshot_date = p.snapshot_date and k.customer_id = p.customer_id
