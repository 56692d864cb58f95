#!/usr/bin/env bash
# Brings this machine's servers into the state the integration tests need, idempotently:
# Debian packages, PostgreSQL 15 with pg_stat_statements/pg_qualstats preloaded (+ hypopg),
# MariaDB with performance_schema=ON. Restarts a server only when its settings changed.
# Fails loudly (never skips) when a server cannot be reached.
set -euo pipefail

PGHOST_ADDR=${DBOPT_PG_HOST:-127.0.0.1}
MYHOST_ADDR=${DBOPT_MYSQL_HOST:-127.0.0.1}
need_pkgs=()
for p in postgresql-15-hypopg postgresql-15-pg-qualstats prometheus sqlite3 chromium redis-server; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  echo "test-services: installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

pg_start() { pg_ctlcluster --skip-systemctl-redirect 15 main start 2>/dev/null || true; }
pg_ok() { psql -h "$PGHOST_ADDR" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }
pg_ok || pg_start
for _ in $(seq 30); do pg_ok && break; sleep 1; done
pg_ok || { echo "test-services: PostgreSQL is not reachable on $PGHOST_ADDR:5432." \
  "Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start" >&2; exit 1; }

want_preload="pg_stat_statements,pg_qualstats"
pg_conf=/etc/postgresql/15/main/conf.d/dbopt-tests.conf
# pg_qualstats samples 1/max_connections by default (PoWA FAQ): tests and the benchmark need every qual.
# Its example-query table (pg_qualstats.max entries, not emptied by pg_qualstats_reset) evicts under
# churn, so it is sized well above what a test run creates.
pg_settings="shared_preload_libraries = '$want_preload'
pg_stat_statements.track = 'top'
pg_qualstats.sample_rate = 1
pg_qualstats.max = 20000
"
if [ "$(cat "$pg_conf" 2>/dev/null)" != "$(printf '%s' "$pg_settings")" ]; then
  printf '%s' "$pg_settings" > "$pg_conf"
fi
pg_loaded() { psql -h "$PGHOST_ADDR" -U postgres -Atqc "select current_setting('shared_preload_libraries') || ' ' ||
  coalesce(current_setting('pg_qualstats.max', true), '')"; }
if [ "$(pg_loaded)" != "$want_preload 20000" ]; then
  echo "test-services: preloading $want_preload into PostgreSQL (restart)"
  pg_ctlcluster --skip-systemctl-redirect 15 main restart
  for _ in $(seq 30); do pg_ok && break; sleep 1; done
fi
pg_ok || { echo "test-services: PostgreSQL did not come back after restart; see /var/log/postgresql/" >&2; exit 1; }

my_ok() { mariadb -uroot -h"$MYHOST_ADDR" -e 'select 1' >/dev/null 2>&1; }
my_start() { start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; }
my_ok || my_start
for _ in $(seq 30); do my_ok && break; sleep 1; done
my_ok || { echo "test-services: MariaDB is not reachable on $MYHOST_ADDR:3306." \
  "Start it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd" >&2; exit 1; }

# performance_schema needs a restart; the consumers also switch at run time. The statement
# history (examples with real values for each digest) only fills while events_statements_current is on;
# history_long keeps them after the application's connection closes.
my_conf=/etc/mysql/dbopt-tests.cnf
my_settings='[mysqld]
performance_schema = ON
performance-schema-consumer-events-statements-current = ON
performance-schema-consumer-events-statements-history = ON
performance-schema-consumer-events-statements-history-long = ON
'
[ "$(cat "$my_conf" 2>/dev/null)" = "$(printf '%s' "$my_settings")" ] || printf '%s' "$my_settings" > "$my_conf"
grep -qxF "!include $my_conf" /etc/mysql/my.cnf || printf '\n!include %s\n' "$my_conf" >> /etc/mysql/my.cnf
if [ "$(mariadb -uroot -h"$MYHOST_ADDR" -Nse "select @@performance_schema")" != "1" ]; then
  echo "test-services: enabling performance_schema in MariaDB (restart)"
  mariadb-admin -uroot -h"$MYHOST_ADDR" shutdown
  for _ in $(seq 30); do pgrep -x mariadbd >/dev/null || break; sleep 1; done
  my_start
  for _ in $(seq 60); do my_ok && break; sleep 1; done
fi
mariadb -uroot -h"$MYHOST_ADDR" -e "UPDATE performance_schema.setup_consumers SET ENABLED='YES'
  WHERE NAME IN ('events_statements_current', 'events_statements_history', 'events_statements_history_long')"
# dbopt refuses an ALTER while an open transaction holds a metadata lock on the table; this plugin
# (shipped with MariaDB, loadable at run time) shows which tables each session has locked.
[ "$(mariadb -uroot -h"$MYHOST_ADDR" -Nse "SELECT COUNT(*) FROM information_schema.PLUGINS
  WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'")" = "1" ] || mariadb -uroot -h"$MYHOST_ADDR" -e "INSTALL SONAME 'metadata_lock_info'"
my_ok || { echo "test-services: MariaDB did not come back after restart; see /var/log/mysql/error.log" >&2; exit 1; }
# Redis: the cache tests (database 13, their own keys only) and the Celery broker of the end-to-end test
# (tests/test_stack_e2e.py, its own DB number and key prefix); started if down, never restarted.
redis_ok() { redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; }
redis_ok || redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null
for _ in $(seq 30); do redis_ok && break; sleep 1; done
redis_ok || { echo "test-services: Redis is not reachable on 127.0.0.1:6379. Start it with: redis-server --daemonize yes" >&2; exit 1; }
echo "test-services: PostgreSQL $(psql -h "$PGHOST_ADDR" -U postgres -Atqc 'show server_version') (preload: $(psql -h "$PGHOST_ADDR" -U postgres -Atqc 'show shared_preload_libraries')), MariaDB $(mariadb -uroot -h"$MYHOST_ADDR" -Nse 'select version()') (performance_schema=$(mariadb -uroot -h"$MYHOST_ADDR" -Nse 'select @@performance_schema')) ready"
