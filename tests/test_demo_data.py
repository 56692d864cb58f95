"""The demo data package on the real servers: schema, deterministic generation, replay, concrete queries.

Scales stay at or below 0.01 (about 32k rows on PostgreSQL/MariaDB, 2.6k on SQLite).
"""

from __future__ import annotations

import hashlib
import json
from contextlib import closing
from pathlib import Path

import pytest

from dbopt.demo_data import (
    DemoDataError,
    concrete_queries,
    demo_tables,
    generate,
    load_workload,
    query_log_path,
    replay,
    sizes,
)
from dbopt.demo_data.__main__ import main
from dbopt.demo_data.connect import connect, execute, quote
from dbopt.demo_data.workload import PLACEHOLDER
from dbopt.targets.base import TOOL_MARKER
from dbopt.targets.querylog import read_query_log

SCALE = 0.01
FIXTURE = {"postgres": "pg_url", "mysql": "mysql_url", "sqlite": "sqlite_url"}
FAMILY = {"postgres": "server", "mysql": "server", "sqlite": "sqlite"}


@pytest.fixture(params=sorted(FIXTURE))
def db(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(dialect, URL of a fresh empty database) for each engine."""
    return request.param, request.getfixturevalue(FIXTURE[request.param])


def query(url: str, sql: str) -> list[tuple]:
    _, conn = connect(url)
    with closing(conn):
        return execute(conn, sql)


def row_counts(url: str, dialect: str) -> dict[str, int]:
    return {t: query(url, f"SELECT COUNT(*) FROM {quote(dialect, t)}")[0][0] for t in demo_tables(dialect)}


def table_digests(url: str, dialect: str) -> dict[str, str]:
    """A digest of every demo table's rows in primary-key order."""
    out = {}
    for table in demo_tables(dialect):
        rows = query(url, f"SELECT * FROM {quote(dialect, table)} ORDER BY 1")
        out[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


def secondary_indexes(url: str, dialect: str) -> list[tuple]:
    if dialect == "postgres":
        return query(
            url,
            "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "WHERE c.relnamespace = 'public'::regnamespace AND NOT i.indisprimary",
        )
    if dialect == "mysql":
        return query(
            url,
            "SELECT table_name, index_name FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND index_name <> 'PRIMARY'",
        )
    return query(url, "SELECT name FROM sqlite_master WHERE type = 'index'")


def test_schema_loads_with_primary_keys_only(db: tuple[str, str]) -> None:
    dialect, url = db
    result = generate(url, SCALE)
    assert set(result.rows) == set(demo_tables(dialect))
    assert secondary_indexes(url, dialect) == []
    if dialect == "postgres":
        with_pk = query(
            url,
            "SELECT conrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'p' AND connamespace = 'public'::regnamespace",
        )
        assert sorted(r[0] for r in with_pk) == sorted(demo_tables(dialect))
    elif dialect == "mysql":
        with_pk = query(
            url,
            "SELECT table_name FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND index_name = 'PRIMARY'",
        )
        assert sorted(r[0] for r in with_pk) == sorted(demo_tables(dialect))


def test_row_counts_follow_the_scale(db: tuple[str, str]) -> None:
    dialect, url = db
    small = generate(url, SCALE / 2)
    assert row_counts(url, dialect) == small.rows == {t: sizes(FAMILY[dialect], SCALE / 2)[t] for t in small.rows}
    full = generate(url, SCALE, replace=True)
    assert row_counts(url, dialect) == full.rows
    big = ("analytics", "audit_log", "sessions") if dialect != "sqlite" else ("worklogs",)
    for table in big:
        assert full.rows[table] == 2 * small.rows[table]
    if dialect == "sqlite":
        assert full.rows["companies"] == small.rows["companies"] == 5  # the tiny table stays tiny
    else:
        assert full.rows["regions"] == small.rows["regions"] == 20
        assert full.rows["analytics"] == 10_000


def test_generation_is_deterministic(db: tuple[str, str]) -> None:
    dialect, url = db
    generate(url, SCALE)
    first = table_digests(url, dialect)
    generate(url, SCALE, replace=True)
    assert table_digests(url, dialect) == first


def test_traps_are_in_the_data(db: tuple[str, str]) -> None:
    dialect, url = db
    generate(url, SCALE)
    table, value = ("worklogs", "approved") if dialect == "sqlite" else ("sessions", "active")
    column = "status"
    share = query(
        url,
        f"SELECT SUM(CASE WHEN {quote(dialect, column)} = '{value}' THEN 1 ELSE 0 END) * 1.0 / COUNT(*) "
        f"FROM {quote(dialect, table)}",
    )[0][0]
    assert 0.93 < float(share) < 0.97


def test_existing_tables_are_kept_without_replace(db: tuple[str, str]) -> None:
    dialect, url = db
    generate(url, SCALE / 2)
    before = row_counts(url, dialect)
    with pytest.raises(DemoDataError, match="replace=True"):
        generate(url, SCALE)
    assert row_counts(url, dialect) == before


def test_bad_scale_changes_nothing(sqlite_url: str) -> None:
    with pytest.raises(DemoDataError, match="scale must be > 0"):
        generate(sqlite_url, 0)
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def _prefix(text: str) -> str:
    """A query's text up to its first value: what its normalized form starts with."""
    cut = min([m.start() for m in PLACEHOLDER.finditer(text)] + [i for i in (text.find("'"),) if i >= 0] + [len(text)])
    return text[:cut]


def test_replay_fills_pg_stat_statements(pg_url: str) -> None:
    generate(pg_url, SCALE)
    stats = replay(pg_url, statements=150, seed=3, scale=SCALE)
    assert stats.statements == 150 and stats.stopped_by == "statements"
    recorded = query(
        pg_url,
        "SELECT query, calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
        "WHERE datname = current_database())",
    )
    # the generator's statements are tagged as dbopt's own, so workload extraction leaves them out
    assert all(TOOL_MARKER in q for q, _ in recorded if "generate_series" in q)
    for q in load_workload().queries("postgres"):
        prefix = _prefix(q.text("postgres"))
        calls = sum(c for text, c in recorded if text.startswith(prefix))
        assert calls == stats.calls.get(q.name, 0), q.name


def test_replay_fills_the_performance_schema_digests(mysql_url: str) -> None:
    generate(mysql_url, SCALE)
    stats = replay(mysql_url, statements=150, seed=3, scale=SCALE)
    database = mysql_url.rsplit("/", 1)[1]
    tables = demo_tables("mysql")
    digests = query(
        mysql_url,
        "SELECT DIGEST_TEXT, COUNT_STAR FROM performance_schema.events_statements_summary_by_digest "
        f"WHERE SCHEMA_NAME = '{database}'",
    )
    ours = [(text, n) for text, n in digests if text and any(f"`{t}`" in text for t in tables)]
    # the generator's INSERT … SELECT statements are not instrumented, so only the replay is here
    assert sum(n for _, n in ours) == stats.statements == 150
    assert len(ours) == len(stats.calls)


def test_replay_writes_the_sqlite_query_log(sqlite_url: str) -> None:
    generate(sqlite_url, SCALE)
    log = query_log_path(sqlite_url)
    assert not log.exists()  # generation is not workload
    stats = replay(sqlite_url, statements=120, seed=5, scale=SCALE)
    assert stats.query_log == str(log)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 120
    assert all(set(rec) == {"ts", "sql", "ms", "rows"} for rec in lines)
    assert not any(PLACEHOLDER.search(rec["sql"]) or "?" in rec["sql"] for rec in lines)  # values inlined
    statements = read_query_log(log)
    assert sum(s.calls for s in statements) == 120
    assert len(statements) == len(stats.calls)


def test_replay_is_deterministic_and_bounded(sqlite_url: str, tmp_path: Path) -> None:
    generate(sqlite_url, SCALE / 2)
    first = replay(sqlite_url, statements=40, seed=9, scale=SCALE / 2, query_log=tmp_path / "a.jsonl")
    second = replay(sqlite_url, statements=40, seed=9, scale=SCALE / 2, query_log=tmp_path / "b.jsonl")
    assert first.calls == second.calls
    a = [json.loads(x)["sql"] for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x)["sql"] for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert a == b
    stopped = replay(sqlite_url, statements=1000, seed=9, scale=SCALE / 2, time_limit_s=1e-9)
    assert stopped.stopped_by == "time_limit" and stopped.statements < 1000


def test_concrete_queries_run(db: tuple[str, str]) -> None:
    dialect, url = db
    generate(url, SCALE)
    texts = concrete_queries(None, 3, seed=7, dialect=dialect, scale=SCALE)
    assert texts == concrete_queries(None, 3, seed=7, dialect=dialect, scale=SCALE)
    assert texts != concrete_queries(None, 3, seed=8, dialect=dialect, scale=SCALE)
    assert set(texts) == {q.name for q in load_workload().queries(dialect)}
    _, conn = connect(url)
    with closing(conn):
        results = {name: [execute(conn, sql) for sql in sqls] for name, sqls in texts.items()}
    assert all(len(sqls) == 3 for sqls in texts.values())
    assert not any(PLACEHOLDER.search(sql) for sqls in texts.values() for sql in sqls)
    # ids are drawn within the generated data, so point lookups find their row
    hit = "billing_rate_lookup" if dialect == "sqlite" else "session_lookup"
    assert all(len(rows) == 1 for rows in results[hit])
    reads = concrete_queries(None, 1, dialect=dialect, scale=SCALE, include_writes=False)
    assert not any(name.startswith("insert") for name in reads)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("server:\n  q:\n    sql: SELECT * FROM t WHERE a = :a\n", r"server\.q\.sql .*\['a'\]"),
        ("server:\n  q:\n    sql: SELECT 1\n    params: {a: {int: [1, 2]}}\n", r"server\.q\.params: \['a'\]"),
        ("server:\n  q:\n    sql: SELECT :a\n    params: {a: {int: [1, nobody]}}\n", r"server\.q\.params\.a"),
        ("server:\n  q:\n    sql: SELECT :a\n    params: {a: {random: 1}}\n", r"exactly one of choice"),
        ("server:\n  q:\n    sql: SELECT :a\n    weight: 0\n    params: {a: {int: [1, 2]}}\n", r"q\.weight"),
        ("oracle:\n  q:\n    sql: SELECT 1\n", r"unknown family 'oracle'"),
        ("server:\n  q:\n    sql: {postgres: SELECT 1}\n", r"one per dialect: postgres, mysql"),
    ],
)
def test_workload_errors_name_file_and_field(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(DemoDataError, match=message) as err:
        load_workload(path)
    assert str(path) in str(err.value)


def test_cli_generate_and_replay(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", sqlite_url, "--scale", "0.005"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]["worklogs"] == sizes("sqlite", 0.005)["worklogs"]
    assert main(["replay", sqlite_url, "--statements", "25", "--scale", "0.005"]) == 0
    assert json.loads(capsys.readouterr().out)["statements"] == 25
    assert main(["generate", sqlite_url, "--scale", "0.005"]) == 2
    assert "--replace" in capsys.readouterr().err
