"""Google Cloud control-plane wrappers (Cloud Run, Cloud SQL) and scheduled scaling. No Airflow import."""
