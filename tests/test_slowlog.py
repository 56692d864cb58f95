"""Slow query log parsing: a hand-written sample with MariaDB/MySQL quirks, and a real MariaDB log."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.engine import make_url

from dbopt.targets.base import TOOL_MARKER, TargetError, WorkloadFilter
from dbopt.targets.slowlog import parse_slow_log

SAMPLE = f"""\
/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:
Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock
Time		    Id Command	Argument
garbage line before any entry
# Time: 240105 10:00:01
# User@Host: app[app] @ localhost [127.0.0.1]
# Thread_id: 31  Schema: shop  QC_hit: No
# Query_time: 0.250000  Lock_time: 0.000100  Rows_sent: 2  Rows_examined: 1000
# Rows_affected: 0  Bytes_sent: 120
# Full_scan: Yes  Full_join: No  Tmp_table: No  Tmp_table_on_disk: No
# Filesort: No  Filesort_on_disk: No  Merge_passes: 0  Priority_queue: No
#
# explain: id	select_type	table	type	possible_keys	key	key_len	ref	rows	r_rows	filtered
# explain: 1	SIMPLE	orders	ALL	NULL	NULL	NULL	NULL	1000	1000.00	100.00
#
use shop;
SET timestamp=1704448801;
SELECT id, amount
  FROM orders
 WHERE customer_id = 42 AND status IN ('paid', 'open');
# Time: 240105 10:00:02
# User@Host: app[app] @ localhost [127.0.0.1]
# Thread_id: 31  Schema: shop  QC_hit: No
# Query_time: 0.750000  Lock_time: 0.000100  Rows_sent: 4  Rows_examined: 1000
# Rows_affected: 0  Bytes_sent: 180
# Full_scan: Yes  Full_join: No  Tmp_table: No  Tmp_table_on_disk: No
SET timestamp=1704448802;
select id, amount from orders
# a comment line inside the statement
where customer_id = 7 and status in ('void');
/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:
Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock
Time		    Id Command	Argument
# Time: 2024-01-05T10:00:03.000000Z
# User@Host: app[app] @ localhost []  Id:    32
# Query_time: 0.100000  Lock_time: 0.000000 Rows_sent: 0  Rows_examined: 5
use `other db`;
SET timestamp=1704448803;
UPDATE orders SET note = 'x;y' WHERE id = 5;
# User@Host: app[app] @ localhost []  Id:    32
# Query_time: 0.300000  Lock_time: 0.000000 Rows_sent: 0  Rows_examined: 0
SET timestamp=1704448804;
{TOOL_MARKER} SELECT COUNT(*) FROM orders;
# User@Host: app[app] @ localhost []  Id:    32
# Query_time: 0.500000  Lock_time: 0.000000 Rows_sent: 0  Rows_examined: 0
SET timestamp=1704448805;
# administrator command: Quit;
# User@Host: app[app] @ localhost []  Id:    32
# Query_time: 0.400000  Lock_time: 0.000000 Rows_sent: 0  Rows_examined: 0
SET timestamp=1704448806;
SHOW TABLES;
# User@Host: app[app] @ localhost []  Id:    32
# Query_time: not-a-number  Lock_time: 0.000000 Rows_sent: 0  Rows_examined: 0
SET timestamp=1704448807;
SELECT 1 FROM orders;
"""


def test_parse_hand_written_sample(tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    log.write_text(SAMPLE)
    statements = parse_slow_log(log)
    assert [s.calls for s in statements] == [2, 1]  # sorted by total time

    select, update = statements
    assert select.query == "SELECT id, amount FROM orders WHERE customer_id = ? AND status IN (?)"
    assert select.total_ms == pytest.approx(1000.0) and select.mean_ms == pytest.approx(500.0)
    assert select.stddev_ms == pytest.approx(250.0)
    assert (select.rows, select.rows_examined, select.no_index_used) == (6, 2000, 2)
    assert select.example.startswith("select id, amount from orders\n# a comment line")
    assert select.example.endswith("status in ('void')")  # the slowest, without the ';' or the banner
    assert select.source == "slowlog" and len(select.digest) == 16

    assert update.query == "UPDATE orders SET note = ? WHERE id = ?"
    assert update.example == "UPDATE orders SET note = 'x;y' WHERE id = 5"
    assert (update.rows, update.no_index_used) == (0, None)  # MySQL format: no Full_scan line

    assert [s.calls for s in parse_slow_log(log, database="shop")] == [2]
    assert [s.query[:6] for s in parse_slow_log(log, database="other db")] == ["UPDATE"]
    assert parse_slow_log(log, WorkloadFilter(min_calls=2)) == [select]
    assert parse_slow_log(log, WorkloadFilter(exclude=("orders",))) == []


def test_unreadable_log_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    with pytest.raises(TargetError, match=str(missing)):
        parse_slow_log(missing)
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert parse_slow_log(empty) == []


def test_parse_real_mariadb_slow_log(mysql_url: str) -> None:
    url = make_url(mysql_url)
    conn = pymysql.connect(host=url.host, port=url.port, user=url.username, database=url.database, autocommit=True)
    # the server runs as its own user: the log directory must be writable for it (not pytest's 0700 tmp)
    log_dir = tempfile.mkdtemp(prefix="dbopt-slowlog-", dir="/tmp")
    os.chmod(log_dir, 0o777)
    log = Path(log_dir) / "slow.log"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.slow_query_log, @@GLOBAL.slow_query_log_file")
            was_on, old_file = cur.fetchone()
            try:
                cur.execute("SET GLOBAL slow_query_log_file = %s", (str(log),))
                cur.execute("SET GLOBAL slow_query_log = ON")
                # slow_query_log has a session value too, copied from the global one at connect time
                cur.execute("SET SESSION slow_query_log = ON, SESSION long_query_time = 0")
                cur.execute("SET SESSION log_slow_verbosity = 'query_plan'")  # adds MariaDB's Full_scan lines
                cur.execute("CREATE TABLE t (id INT PRIMARY KEY, k INT, label VARCHAR(10))")
                cur.executemany("INSERT INTO t VALUES (%s, %s, %s)", [(i, i % 10, f"l{i}") for i in range(200)])
                for k in range(5):
                    cur.execute(
                        "SELECT id, label\nFROM t\nWHERE k = %s AND label IN %s", (k, ("l1", "l2")[: k % 2 + 1])
                    )
                cur.execute("SELECT COUNT(*) FROM t WHERE label = 'l7'")
                cur.execute(f"{TOOL_MARKER} SELECT COUNT(*) FROM t")
            finally:
                cur.execute("SET GLOBAL slow_query_log = %s", (was_on,))
                cur.execute("SET GLOBAL slow_query_log_file = %s", (old_file,))
        statements = parse_slow_log(log, database=url.database)
    finally:
        conn.close()
        shutil.rmtree(log_dir, ignore_errors=True)

    by_query = {s.query: s for s in statements}
    lookup = by_query["SELECT id, label FROM t WHERE k = ? AND label IN (?)"]
    assert lookup.calls == 5 and lookup.rows_examined == 5 * 200 and lookup.no_index_used == 5
    assert lookup.total_ms >= 0 and lookup.example.startswith("SELECT id, label\nFROM t\nWHERE k = ")
    assert by_query["SELECT COUNT(*) FROM t WHERE label = ?"].calls == 1
    assert "INSERT INTO t VALUES (?, ?, ?)" in by_query  # one multi-row INSERT from executemany
    assert "SELECT COUNT(*) FROM t" not in by_query  # dbopt's own
    assert not any(q.startswith(("SET", "CREATE")) for q in by_query)
