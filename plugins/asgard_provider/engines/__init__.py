"""Engines: the work of a task (Iceberg writes, Spark SQL, Feast definitions, scoring...) without Airflow.

An engine module imports no ``airflow`` package: it takes plain values (a Spark session, a pyiceberg table,
a Feast store, catalog settings) and returns typed results (dataclasses). Operators translate the Airflow
context into an engine call and publish the result (asset events, lineage, XCom) through
:mod:`asgard_provider.publishing`; the Spark driver and the task pod call the engines directly.
"""
