{# Schemas are the Iceberg namespaces (bronze/silver/gold): use a model's custom schema as-is, no target prefix. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{- custom_schema_name if custom_schema_name else target.schema -}}
{%- endmacro %}

{# The snapshot date from var('as_of'), checked: a typo must fail the run, never silently build an empty snapshot. #}
{% macro asgard_as_of() -%}
    {%- set value = var('as_of') -%}
    {%- if not execute -%}{{ return('1970-01-01') }}{%- endif -%}
    {%- if value is none or not modules.re.match('^\d{4}-\d{2}-\d{2}$', value | string) -%}
        {{ exceptions.raise_compiler_error(
            "var 'as_of' must be a date YYYY-MM-DD (the snapshot to build), got " ~ (value | string)
            ~ "; pass --vars '{as_of: 2025-11-11}' or run from the Airflow DAG") }}
    {%- endif -%}
    {{- return(value | string) -}}
{%- endmacro %}

{# Materialization per engine: DuckDB writes a Parquet file the asgard_iceberg plugin commits to Iceberg;
   Trino writes the Iceberg table itself, replacing the snapshots this run rebuilds. #}
{% macro asgard_gold_materialization() -%}
    {{- return('external' if target.type == 'duckdb' else 'incremental') -}}
{%- endmacro %}
