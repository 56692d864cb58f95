"""Airflow operators built on the core modules."""
