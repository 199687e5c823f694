"""Airflow DAG for the customer churn pipeline, built from include/pipelines/customer_churn.yaml."""

from asgard_provider.pipeline.factory import dag_from_file

dag = dag_from_file(__file__)
