"""Metrics, rollback rules, canary analysis and the health gate (core: no Airflow import)."""
