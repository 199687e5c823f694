"""Source readers: Arrow batches from databases, REST APIs and object storage, without importing Airflow.

Hooks resolve Airflow connections into the plain settings these readers take; operators hand the batches to
the Iceberg write. Every reader names the source in its errors and never echoes a credential.
"""
