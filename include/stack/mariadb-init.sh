#!/bin/bash
# First start of the target MariaDB (docker-compose.yaml; MARIADB_DATABASE=demo is created by the
# image): a dbopt user with exactly the least-privilege grants of README "Least privilege".
set -euo pipefail
mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" <<SQL
CREATE USER 'dbopt'@'%' IDENTIFIED BY '${DBOPT_TARGET_PASSWORD//\'/\'\'}';
GRANT PROCESS ON *.* TO 'dbopt'@'%';
GRANT SELECT ON performance_schema.* TO 'dbopt'@'%';
GRANT SELECT, INDEX, ALTER ON demo.* TO 'dbopt'@'%';
SQL
