"""Airflow DAG for the customer value pipeline, built from include/pipelines/customer_value.yaml."""

from asgard_provider.pipeline.factory import dag_from_file

dag = dag_from_file(__file__)
