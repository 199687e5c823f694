"""Airflow DAG for the patient_readmission pipeline, built from include/pipelines/patient_readmission.yaml."""

from asgard_provider.pipeline.factory import dag_from_file

dag = dag_from_file(__file__)
