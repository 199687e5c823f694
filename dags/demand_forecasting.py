"""Airflow DAG for the demand_forecasting pipeline, built from include/pipelines/demand_forecasting.yaml."""

# Imported from airflow.providers.asgard so the DAG processor pre-imports the factory once, not in every parse.
from airflow.providers.asgard import dag_from_file

dag = dag_from_file(__file__)
