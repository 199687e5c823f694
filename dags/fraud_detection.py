"""Airflow DAG for the fraud_detection pipeline, built from include/pipelines/fraud_detection.yaml."""

# Imported from airflow.providers.asgard so the DAG processor pre-imports the factory once, not in every parse.
from airflow.providers.asgard import dag_from_file

dag = dag_from_file(__file__)
