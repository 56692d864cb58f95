"""Airflow sensors of dbopt."""
