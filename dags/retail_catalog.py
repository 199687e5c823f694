"""Airflow DAG for the retail_catalog pipeline, built from include/pipelines/retail_catalog.yaml."""

# Imported from airflow.providers.asgard so the DAG processor pre-imports the factory once, not in every parse.
from airflow.providers.asgard import dag_from_file

dag = dag_from_file(__file__)
