{#
  One row per card transaction up to the end of the `as_of` day: the transaction's features against its card's
  history (from the Silver rolling windows) and the label `is_fraud` = a chargeback was reported before `as_of`.
  Transactions newer than `label_delay_days` are unlabelled (NULL): their chargebacks may still come. The
  transactions of `as_of` itself are the ones batch inference scores. The whole table is rebuilt every run (labels
  of older transactions change as chargebacks arrive).
#}
{{ config(
    materialized=asgard_gold_materialization(),
    plugin='asgard_iceberg',
    format='parquet',
    location=(target.external_root | default('.')) ~ '/transaction_features-' ~ invocation_id ~ '.parquet',
    iceberg_table='gold.transaction_features',
    iceberg_partition_by=['transaction_date'],
    incremental_strategy='delete+insert',
    unique_key='transaction_id',
    properties={'partitioning': "ARRAY['transaction_date']"},
) }}

{%- set as_of = asgard_as_of() -%}
{%- set as_of_date = "cast('" ~ as_of ~ "' as date)" -%}
{%- set labelled_before = dbt.dateadd('day', -(var('label_delay_days') | int), as_of_date) -%}
{%- set risky = var('risky_categories') -%}

with history as (
    select cast(min(transaction_ts) as date) as first_day
    from {{ source('silver', 'card_transactions') }}
),

transactions as (
    select t.*
    from {{ source('silver', 'card_transactions') }} as t
    cross join history as h
    where cast(t.transaction_ts as date) <= {{ as_of_date }}
        and cast(t.transaction_ts as date) >= {{ dbt.dateadd('day', var('warmup_days') | int, 'h.first_day') }}
)

select
    transaction_id,
    card_id,
    cast(transaction_ts as date) as transaction_date,
    cast(transaction_ts as timestamp) as feature_timestamp,
    cast(amount as double) as amount,
    cast(amount / coalesce(nullif(amount_mean_30d, 0), amount) as double) as amount_to_card_mean_30d,
    cast(txn_count_1h as bigint) as txn_count_1h,
    cast(txn_count_24h as bigint) as txn_count_24h,
    cast(amount_sum_24h as double) as amount_sum_24h,
    cast(txn_count_30d as bigint) as txn_count_30d,
    -- A card's first transaction has no previous one: a month stands in for "long ago".
    cast(coalesce(seconds_since_previous, 2592000) / 60.0 as double) as minutes_since_previous,
    cast(is_new_merchant as bigint) as is_new_merchant,
    cast(is_new_country as bigint) as is_new_country,
    cast(case when country <> home_country then 1 else 0 end as bigint) as is_foreign,
    cast(case when merchant_category in ({% for c in risky %}'{{ c }}'{% if not loop.last %}, {% endif %}{% endfor %})
        then 1 else 0 end as bigint) as is_risky_category,
    cast(extract(hour from transaction_ts) as bigint) as hour_of_day,
    cast({{ dbt.datediff('card_issued_date', 'cast(transaction_ts as date)', 'day') }} as bigint) as card_age_days,
    cast(case
        when cast(transaction_ts as date) >= {{ labelled_before }} then null
        when chargeback_reported_at is not null and chargeback_reported_at < {{ as_of_date }} then 1
        else 0
    end as integer) as is_fraud
from transactions
