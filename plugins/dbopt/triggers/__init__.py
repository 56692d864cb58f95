"""Deferrable triggers (run in the Airflow triggerer; keep them off the Dag bundle path)."""
