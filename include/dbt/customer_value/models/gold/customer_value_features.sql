{#
  One row per (customer, snapshot) for customers with a purchase before the snapshot: spend and frequency
  features from sales strictly before the snapshot date, and the label `high_value` = the customer's spend in
  [snapshot, snapshot + horizon) is at or above that snapshot's top-quarter cut (and positive).

  Each run rebuilds two snapshots: `as_of` (features only, high_value NULL; batch inference scores it) and
  `as_of - horizon` (labelled now; training reads it). Both snapshot_date partitions are replaced in one commit.
#}
{{ config(
    materialized=asgard_gold_materialization(),
    plugin='asgard_iceberg',
    format='parquet',
    location=(target.external_root | default('.')) ~ '/customer_value_features-' ~ invocation_id ~ '.parquet',
    iceberg_table='gold.customer_value_features',
    iceberg_partition_by=['snapshot_date'],
    iceberg_replace_column='snapshot_date',
    incremental_strategy='delete+insert',
    unique_key='snapshot_date',
    properties={'partitioning': "ARRAY['snapshot_date']"},
) }}

{%- set as_of = asgard_as_of() -%}
{%- set horizon = var('value_horizon_days') | int -%}
{%- set quantile = var('high_value_quantile') | float -%}
{%- set as_of_date = "cast('" ~ as_of ~ "' as date)" -%}

with snapshots as (
    select {{ as_of_date }} as snapshot_date, cast(null as date) as label_until
    union all
    select
        cast({{ dbt.dateadd('day', -horizon, as_of_date) }} as date) as snapshot_date,
        {{ as_of_date }} as label_until
),

sales as (
    -- Amounts stay decimal until the end: exact sums, so reruns reproduce every value.
    select customer_id, transaction_date, amount, registration_date
    from {{ source('silver', 'retail_sales') }}
),

history as (
    select
        s.snapshot_date,
        s.label_until,
        t.customer_id,
        min(t.registration_date) as registration_date,
        count(*) as lifetime_orders,
        sum(t.amount) as lifetime_spend,
        sum(case when t.transaction_date >= {{ dbt.dateadd('day', -90, 's.snapshot_date') }} then 1 else 0 end)
            as orders_90d,
        sum(case when t.transaction_date >= {{ dbt.dateadd('day', -90, 's.snapshot_date') }} then t.amount else 0 end)
            as spend_90d,
        sum(case when t.transaction_date >= {{ dbt.dateadd('day', -365, 's.snapshot_date') }} then 1 else 0 end)
            as orders_365d,
        sum(case when t.transaction_date >= {{ dbt.dateadd('day', -365, 's.snapshot_date') }} then t.amount else 0 end)
            as spend_365d,
        min(t.transaction_date) as first_purchase_date,
        max(t.transaction_date) as last_purchase_date
    from snapshots as s
    inner join sales as t on t.transaction_date < s.snapshot_date
    group by s.snapshot_date, s.label_until, t.customer_id
),

future as (
    select s.snapshot_date, t.customer_id, sum(t.amount) as future_spend
    from snapshots as s
    inner join sales as t
        on t.transaction_date >= s.snapshot_date
        and t.transaction_date < s.label_until
    group by s.snapshot_date, t.customer_id
),

outcomes as (
    select h.snapshot_date, h.customer_id, h.label_until, coalesce(f.future_spend, 0) as future_spend
    from history as h
    left join future as f on f.snapshot_date = h.snapshot_date and f.customer_id = h.customer_id
),

cuts as (
    select
        snapshot_date,
        {% if target.type == 'trino' -%}
        approx_percentile(cast(future_spend as double), {{ quantile }})
        {%- else -%}
        quantile_cont(cast(future_spend as double), {{ quantile }})
        {%- endif %} as cut
    from outcomes
    where label_until is not null
    group by snapshot_date
)

select
    h.customer_id,
    h.snapshot_date,
    cast(h.snapshot_date as timestamp) as feature_timestamp,
    cast(h.orders_90d as bigint) as orders_90d,
    cast(h.spend_90d as double) as spend_90d,
    cast(h.orders_365d as bigint) as orders_365d,
    cast(h.spend_365d as double) as spend_365d,
    cast(h.lifetime_orders as bigint) as lifetime_orders,
    cast(h.lifetime_spend / h.lifetime_orders as double) as avg_order_value,
    cast({{ dbt.datediff('h.last_purchase_date', 'h.snapshot_date', 'day') }} as bigint) as days_since_last_purchase,
    cast({{ dbt.datediff('h.first_purchase_date', 'h.snapshot_date', 'day') }} as bigint) as days_since_first_purchase,
    cast({{ dbt.datediff('coalesce(h.registration_date, h.first_purchase_date)', 'h.snapshot_date', 'day') }} as bigint)
        as account_age_days,
    case when h.label_until is null then null else cast(o.future_spend as double) end as future_spend,
    cast(case
        when h.label_until is null then null
        when o.future_spend > 0 and cast(o.future_spend as double) >= c.cut then 1
        else 0
    end as integer) as high_value
from history as h
inner join outcomes as o on o.snapshot_date = h.snapshot_date and o.customer_id = h.customer_id
left join cuts as c on c.snapshot_date = h.snapshot_date
