"""dbt integration: Iceberg plugin for dbt-duckdb and Cosmos task-group rendering."""
