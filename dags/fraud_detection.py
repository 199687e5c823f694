"""Airflow DAG for the fraud_detection pipeline, built from include/pipelines/fraud_detection.yaml."""

from asgard_provider.pipeline.factory import dag_from_file

dag = dag_from_file(__file__)
