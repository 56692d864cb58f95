# dbopt on the official Airflow image (built with Airflow's own constraints) — docker-compose.yaml builds it.
FROM apache/airflow:3.3.2-python3.11

USER root
# pg_dump for schema backups of PostgreSQL targets (Debian bookworm's client is PostgreSQL 15)
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
USER airflow

# The project's pinned requirements; naming apache-airflow==$AIRFLOW_VERSION keeps pip from
# changing the image's Airflow.
COPY --chown=airflow:0 requirements.txt /opt/dbopt/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/dbopt/requirements.txt

# The dbopt package (the `dbopt` CLI and `python -m dbopt…`); compose also mounts plugins/ over it
COPY --chown=airflow:0 pyproject.toml README.md /opt/dbopt/
COPY --chown=airflow:0 plugins/dbopt /opt/dbopt/plugins/dbopt
RUN pip install --no-cache-dir --no-deps /opt/dbopt

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 include /opt/airflow/include
