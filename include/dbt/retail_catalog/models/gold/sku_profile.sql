{#
  One row per SKU of the product catalog launched by `as_of`: its category, unit price, pack size and shelf
  life. `valid_from` (the launch) is the feature timestamp, so every sale after it sees the SKU's profile.
#}
{{ config(
    materialized=asgard_gold_materialization(),
    plugin='asgard_iceberg',
    format='parquet',
    location=(target.external_root | default('.')) ~ '/sku_profile-' ~ invocation_id ~ '.parquet',
    iceberg_table='gold.sku_profile',
    incremental_strategy='delete+insert',
    unique_key='sku_id',
) }}

{%- set as_of = asgard_as_of() -%}

select
    cast(sku_id as bigint) as sku_id,
    lower(trim(category)) as category,
    cast(unit_price as double) as unit_price,
    cast(pack_size as bigint) as pack_size,
    cast(shelf_life_days as bigint) as shelf_life_days,
    cast(cast(launched_on as date) as timestamp) as valid_from
from {{ source('bronze', 'skus') }}
where cast(launched_on as date) <= cast('{{ as_of }}' as date)
