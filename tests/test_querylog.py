"""The JSON-lines query log: writing (also from several processes), normalizing, aggregating, rotating."""

from __future__ import annotations

import json
import logging
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from dbopt.targets.base import TOOL_MARKER, TargetError, WorkloadFilter
from dbopt.targets.querylog import (
    QueryLog,
    inline_parameters,
    normalize,
    read_query_log,
    rotate_query_log,
    scan_query_log,
    timed_execute,
)


def _write_lines(path: Path, n: int) -> None:
    log = QueryLog(path)
    for i in range(n):
        log.record(f"SELECT * FROM t WHERE note = '{'x' * (i % 300)}'", 1.0, 1)


@pytest.mark.parametrize(
    ("sql", "normalized"),
    [
        ("SELECT * FROM t WHERE a = 42", "SELECT * FROM t WHERE a = ?"),
        ("SELECT * FROM t WHERE a = -4.5e3", "SELECT * FROM t WHERE a = ?"),
        ("SELECT a - 1 FROM t", "SELECT a - ? FROM t"),
        ("SELECT * FROM t WHERE s = 'it''s ? here'", "SELECT * FROM t WHERE s = ?"),
        ("SELECT * FROM t WHERE b = X'00ff'", "SELECT * FROM t WHERE b = ?"),
        ("SELECT * FROM t WHERE a IN (1, 2, 3)", "SELECT * FROM t WHERE a IN (?)"),
        ("SELECT * FROM t WHERE a IN ('x')", "SELECT * FROM t WHERE a IN (?)"),
        ("SELECT * FROM t WHERE a IN (?, ?)", "SELECT * FROM t WHERE a IN (?)"),
        ("SELECT f(1, 2) FROM t", "SELECT f(?, ?) FROM t"),
        ("SELECT *  FROM t /* from the app */\n WHERE a=?3", "SELECT * FROM t WHERE a=?3"),
        ('SELECT "1" FROM "t 2"', 'SELECT "1" FROM "t 2"'),
        ("SELECT 'unterminated", "SELECT 'unterminated"),  # untokenizable: kept, whitespace folded
    ],
)
def test_normalize(sql: str, normalized: str) -> None:
    assert normalize(sql) == normalized


def test_missing_log_is_an_empty_workload(tmp_path: Path) -> None:
    assert read_query_log(tmp_path / "never-written.jsonl") == []
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert read_query_log(empty) == []


def test_unreadable_log_names_the_path(tmp_path: Path) -> None:
    a_directory = tmp_path / "log.jsonl"
    a_directory.mkdir()
    with pytest.raises(TargetError, match=str(a_directory)):
        read_query_log(a_directory)


def test_different_literals_aggregate_into_one_statement(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / "q.jsonl")
    log.record("SELECT * FROM orders WHERE customer_id = 7 AND status IN ('paid', 'new')", 2.0, 3)
    log.record("SELECT * FROM orders WHERE customer_id = 912 AND status IN ('void')", 6.0, 1)
    log.record("select *  from orders where customer_id = 8 and status in ('x','y','z')", 4.0, 0)
    log.record("SELECT count(*) FROM customers", 1.0, 1)

    by_query = {s.query: s for s in read_query_log(log.path)}

    assert set(by_query) == {
        "SELECT * FROM orders WHERE customer_id = ? AND status IN (?)",
        "select * from orders where customer_id = ? and status in (?)",
        "SELECT count(*) FROM customers",
    }
    upper = by_query["SELECT * FROM orders WHERE customer_id = ? AND status IN (?)"]
    lower = by_query["select * from orders where customer_id = ? and status in (?)"]
    assert upper.digest == lower.digest  # the digest ignores case, as the other engines' do
    assert (upper.calls, upper.total_ms, upper.mean_ms, upper.stddev_ms, upper.rows) == (2, 8.0, 4.0, 2.0, 4)
    assert upper.example == "SELECT * FROM orders WHERE customer_id = 912 AND status IN ('void')"  # the slowest
    assert upper.source == "querylog"


def test_filter_is_applied(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / "q.jsonl")
    for i in range(3):
        log.record(f"SELECT * FROM a WHERE x = {i}", 10.0, 1)
    log.record("SELECT * FROM b", 50.0, 1)
    log.record("SELECT * FROM secret_table", 99.0, 1)

    kept = read_query_log(log.path, WorkloadFilter(min_calls=1, top_n=2, exclude=("secret",)))

    assert [s.query for s in kept] == ["SELECT * FROM b", "SELECT * FROM a WHERE x = ?"]  # by total time
    assert [s.query for s in read_query_log(log.path, WorkloadFilter(min_calls=2))] == ["SELECT * FROM a WHERE x = ?"]


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "q.jsonl"
    good = json.dumps({"ts": "2026-02-10T12:00:00+00:00", "sql": "SELECT 1", "ms": 1.5, "rows": 1})
    bad = [
        b"not json at all",
        b"[1, 2, 3]",
        json.dumps({"ms": 1.0, "rows": 1}).encode(),  # no sql
        json.dumps({"sql": "SELECT 2", "ms": -1, "rows": 1}).encode(),
        json.dumps({"sql": "SELECT 2", "ms": True, "rows": 1}).encode(),
        json.dumps({"sql": "SELECT 2", "ms": 1, "rows": "many"}).encode(),
        b'{"sql": "SELECT \xff", "ms": 1}',  # not UTF-8
    ]
    truncated = good[:20].encode()  # a writer died mid-line
    path.write_bytes(b"\n".join([good.encode(), *bad, b"", good.encode(), truncated]))

    scan = scan_query_log(path)
    with caplog.at_level(logging.WARNING, logger="dbopt.targets.querylog"):
        statements = read_query_log(path)

    assert (scan.lines, scan.malformed, scan.first_malformed_line) == (11, 8, 2)
    assert [(s.query, s.calls) for s in statements] == [("SELECT ?", 2)]
    assert "skipped 8 malformed line(s)" in caplog.text


def test_own_statements_are_excluded(tmp_path: Path) -> None:
    log = QueryLog(tmp_path / "q.jsonl")
    log.record(f"{TOOL_MARKER} SELECT COUNT(*) FROM orders", 9.0, 1)
    log.record("SELECT COUNT(*) FROM orders", 1.0, 1)

    assert scan_query_log(log.path).excluded == 1
    assert [s.calls for s in read_query_log(log.path)] == [1]


def test_several_processes_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    with ProcessPoolExecutor(max_workers=4) as pool:
        list(pool.map(_write_lines, [path] * 4, [150] * 4))

    scan = scan_query_log(path)

    assert (scan.lines, scan.malformed) == (600, 0)
    assert [s.calls for s in scan.statements] == [600]


def test_timed_execute_logs_with_parameters_inlined(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    conn.execute("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n INTEGER)")
    log = QueryLog(tmp_path / "app.queries.jsonl")
    params = (7, 2.5, "it's", b"\x00\xff", None)

    assert timed_execute(conn, log, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", params) == []
    rows = timed_execute(conn, log, "SELECT * FROM t WHERE s = ? AND i > ?", ("it's", 1))

    records = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [r["sql"] for r in records] == [
        "INSERT INTO t VALUES (7, 2.5, 'it''s', X'00ff', NULL)",
        "SELECT * FROM t WHERE s = 'it''s' AND i > 1",
    ]
    assert [r["rows"] for r in records] == [1, 1]
    assert all(r["ms"] >= 0 and r["ts"].endswith("+00:00") for r in records)
    # the logged text is a runnable statement that finds the same rows
    assert conn.execute(records[1]["sql"]).fetchall() == rows == [params]
    with pytest.raises(ValueError, match="2 parameters"):
        inline_parameters("SELECT ?", (1, 2))


def test_rotation_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "app.db.queries.jsonl"
    assert rotate_query_log(path) is None
    _write_lines(path, 3)

    first = rotate_query_log(path)
    _write_lines(path, 2)  # writers carry on into a fresh log
    second = rotate_query_log(path)

    assert first is not None and second is not None and first != second
    assert first.name.startswith("app.db.queries.") and first.suffix == ".jsonl"
    assert not path.exists()
    assert [scan_query_log(p).lines for p in (first, second)] == [3, 2]
    assert read_query_log(path) == []
