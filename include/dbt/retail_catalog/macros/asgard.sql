{# Iceberg namespaces are the schemas: a model's custom schema is used as-is. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{- custom_schema_name if custom_schema_name else target.schema -}}
{%- endmacro %}

{# var('as_of') checked as YYYY-MM-DD. #}
{% macro asgard_as_of() -%}
    {%- set value = var('as_of') -%}
    {%- if not execute -%}{{ return('1970-01-01') }}{%- endif -%}
    {%- if value is none or not modules.re.match('^\d{4}-\d{2}-\d{2}$', value | string) -%}
        {{ exceptions.raise_compiler_error("var 'as_of' must be a date YYYY-MM-DD, got " ~ (value | string)) }}
    {%- endif -%}
    {{- return(value | string) -}}
{%- endmacro %}

{% macro asgard_gold_materialization() -%}
    {{- return('external' if target.type == 'duckdb' else 'incremental') -}}
{%- endmacro %}
