"""Airflow hooks: connection handling around the core clients."""
