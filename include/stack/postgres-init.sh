#!/bin/bash
# First start of the target PostgreSQL (docker-compose.yaml): the demo database owned by demo_owner
# (the application), and a dbopt login with exactly the least-privilege grants of README
# "Least privilege": pg_read_all_stats, CREATE on the schema, membership in the owner role.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_pw="$DEMO_OWNER_PASSWORD" -v dbopt_pw="$DBOPT_TARGET_PASSWORD" <<'SQL'
CREATE ROLE demo_owner LOGIN PASSWORD :'owner_pw';
CREATE ROLE dbopt LOGIN PASSWORD :'dbopt_pw';
CREATE DATABASE demo OWNER demo_owner;
GRANT pg_read_all_stats TO dbopt;
GRANT demo_owner TO dbopt;
\connect demo
CREATE EXTENSION pg_stat_statements;
GRANT CREATE ON SCHEMA public TO demo_owner, dbopt;
SQL
