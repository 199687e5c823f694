{#
  One row per store, SKU and day with sales known before `as_of`: the recent level of the store x SKU's sales,
  the promotion days planned for the next `horizon_days` days and the label `units_next_7d`, the units sold in
  the `horizon_days` days after the row's day. The label is NULL for the last `horizon_days` days, whose future is
  not known yet; the latest row of each store x SKU (the day before `as_of`) is the one batch inference scores.
  The first `warmup_days` days are left out (no full window behind them). Rebuilt on every run.
#}
{{ config(
    materialized=asgard_gold_materialization(),
    plugin='asgard_iceberg',
    format='parquet',
    location=(target.external_root | default('.')) ~ '/demand_features-' ~ invocation_id ~ '.parquet',
    iceberg_table='gold.demand_features',
    iceberg_partition_by=['category'],
    incremental_strategy='delete+insert',
    unique_key=['store_id', 'sku_id', 'sale_date'],
    properties={'partitioning': "ARRAY['category']"},
) }}

{%- set as_of = asgard_as_of() -%}
{%- set as_of_date = "cast('" ~ as_of ~ "' as date)" -%}
{%- set horizon = var('horizon_days') | int -%}

with sales as (
    select *
    from {{ source('silver', 'daily_sales') }}
    where sale_date < {{ as_of_date }}
),

history as (
    select min(sale_date) as first_day from sales
),

windows as (
    -- Silver holds every store x SKU x day (zeros included), so row windows are day windows.
    select
        store_id,
        sku_id,
        category,
        sale_date,
        units,
        on_promotion,
        sum(units) over (
            partition by store_id, sku_id order by sale_date rows between 6 preceding and current row
        ) as units_last_7d,
        sum(units) over (
            partition by store_id, sku_id order by sale_date rows between 27 preceding and current row
        ) as units_last_28d,
        sum(units) over (
            partition by store_id, sku_id order by sale_date rows between 1 following and {{ horizon }} following
        ) as units_following,
        count(*) over (
            partition by store_id, sku_id order by sale_date rows between 1 following and {{ horizon }} following
        ) as days_following
    from sales
),

promotion_days as (
    -- Days of the next horizon covered by a planned promotion of the SKU (promotions are chain-wide).
    select
        w.store_id,
        w.sku_id,
        w.sale_date,
        coalesce(sum(greatest(0, 1 + {{ dbt.datediff(
            'greatest(p.start_date, ' ~ dbt.dateadd('day', 1, 'w.sale_date') ~ ')',
            'least(p.end_date, ' ~ dbt.dateadd('day', horizon, 'w.sale_date') ~ ')',
            'day') }})), 0) as promo_days
    from windows as w
    left join {{ source('silver', 'promotions') }} as p
        on p.sku_id = w.sku_id
        and p.start_date <= {{ dbt.dateadd('day', horizon, 'w.sale_date') }}
        and p.end_date > w.sale_date
    group by w.store_id, w.sku_id, w.sale_date
)

select
    w.store_id,
    w.sku_id,
    w.category,
    w.sale_date,
    cast(w.sale_date as timestamp) as feature_timestamp,
    cast(w.units as bigint) as units_today,
    cast(w.units_last_7d as bigint) as units_last_7d,
    cast(w.units_last_28d as bigint) as units_last_28d,
    cast(w.on_promotion as bigint) as on_promotion,
    cast(least(p.promo_days, {{ horizon }}) as bigint) as promo_days_next_7d,
    cast(extract(isodow from w.sale_date) as bigint) as day_of_week,
    cast(case when w.days_following = {{ horizon }} then w.units_following end as double) as units_next_7d
from windows as w
inner join promotion_days as p
    on p.store_id = w.store_id and p.sku_id = w.sku_id and p.sale_date = w.sale_date
cross join history as h
where w.sale_date >= {{ dbt.dateadd('day', var('warmup_days') | int, 'h.first_day') }}
