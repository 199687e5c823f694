"""Engines: the work of Asgard tasks without Airflow (scoring, monitoring, ...), returning typed results."""
