"""Advice on a database as production leaves it: bulk-loaded once, counters never reset.

Only pg_stat_statements and HypoPG (no pg_qualstats examples): statements are planned generic.
The write cost of a table comes from the write statements of the same window as the reads, never
from lifetime counters; every statement without an index says why; no index is led by a key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest

from dbopt.advisor import AdvisorPolicy, advise
from dbopt.cli import main
from dbopt.targets import open_target
from dbopt.targets.base import Statement, Target

ROWS = 60_000
SCHEMA = (
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,"
    " amount int NOT NULL, note text NOT NULL, created_at timestamptz NOT NULL);"
    "CREATE TABLE tiny (id int PRIMARY KEY, code text NOT NULL)"
)
# set-based bulk load: the lifetime counters (n_tup_ins) say 60k rows written
LOAD = (
    "INSERT INTO orders SELECT g, g % 3000, CASE WHEN g % 10 = 0 THEN 'open' ELSE 'paid' END, g % 500, md5(g::text),"
    f" now() - g * interval '1 minute' FROM generate_series(1, {ROWS}) g;"
    "INSERT INTO tiny SELECT g, 'c' || g FROM generate_series(1, 50) g; ANALYZE"
)
READ = "SELECT * FROM orders WHERE customer_id = $1"


def stmt(query: str, calls: int, mean_ms: float) -> Statement:
    return Statement(Statement.digest_of(query), query, calls, calls * mean_ms, mean_ms, source="pg_stat_statements")


@pytest.fixture
def bulk_loaded(pg_url: str) -> Iterator[Target]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(LOAD)
    with open_target(pg_url) as target:
        yield target


def test_a_bulk_loaded_table_is_not_judged_write_heavy(bulk_loaded: Target) -> None:
    assert (bulk_loaded.table_stats(["orders"])["orders"].writes or 0) >= ROWS  # lifetime counters
    # a light read workload: 20 calls × 5 ms = 100 ms, far below 60k rows × any per-row write cost
    advice = advise(bulk_loaded, [stmt(READ, 20, 5.0)])
    assert [r.columns for r in advice.recommendations] == [("customer_id",)]
    (orders,) = advice.write_costs
    assert orders.ms == 0 and "no write statement" in orders.source and "lifetime" in orders.source


def test_write_cost_comes_from_the_window_and_names_its_source(bulk_loaded: Target) -> None:
    update = stmt("UPDATE orders SET amount = $1 WHERE id = $2", 100_000, 2.0)
    advice = advise(bulk_loaded, [stmt(READ, 20, 5.0), update], AdvisorPolicy(write_penalty=0.5))
    assert advice.recommendations == ()
    reasons = {s.digest: s for s in advice.skipped}
    read = reasons[Statement.digest_of(READ)]
    # both numbers: 0.5 × 200 s of UPDATEs against what the index saves the reads
    assert read.code == "write-cost" and "100000 ms of index maintenance on orders >= 95 ms saved" in read.reason
    assert reasons[update.digest].code == "write" and "weighed against new indexes on orders" in (
        reasons[update.digest].reason
    )
    (orders,) = advice.write_costs
    assert orders.ms == 200_000 and orders.statements == 1 and "pg_stat_statements" in orders.source


def test_every_statement_without_an_index_says_why(bulk_loaded: Target) -> None:
    work = {
        "read": stmt(READ, 20, 5.0),
        "like": stmt("SELECT count(*) FROM orders WHERE note LIKE '%abc%'", 10, 20.0),
        "pk": stmt("SELECT * FROM orders WHERE id = $1", 1000, 0.1),
        "pk_led": stmt("SELECT id, status FROM orders WHERE id = $1 AND status = $2", 1000, 0.1),
        "tiny": stmt("SELECT * FROM tiny WHERE code = $1", 1000, 0.1),
        "unselective": stmt("SELECT * FROM orders WHERE status = 'paid'", 5, 40.0),
        "insert": stmt("INSERT INTO orders VALUES ($1, $2, $3, $4, $5)", 10, 0.2),
        "broken": stmt("SELECT * FROM orders WHERE customer_id = $1 AND nope = $2", 5, 1.0),
        "garbage": stmt("SELEC * FROM orders", 1, 1.0),
    }
    advice = advise(bulk_loaded, list(work.values()))
    served = {q.digest for r in advice.recommendations for q in r.queries}
    assert served == {work["read"].digest}
    why = {s.digest: s for s in advice.skipped}
    assert set(why) == {s.digest for k, s in work.items() if k != "read"}
    assert all(s.reason and s.code for s in advice.skipped)
    assert "leading wildcard" in why[work["like"].digest].reason
    assert "led by the primary key (id)" in why[work["pk"].digest].reason
    assert "led by the primary key (id)" in why[work["pk_led"].digest].reason
    assert "table too small" in why[work["tiny"].digest].reason
    assert "unselective" in why[work["unselective"].digest].reason
    assert why[work["insert"].digest].code == "write"
    assert why[work["broken"].digest].code in ("not-plannable", "no-candidate")
    assert why[work["garbage"].digest].code == "not-analysable"
    json.dumps(advice.to_dict())


def test_cli_prints_a_reason_per_statement(pg_url: str, bulk_loaded: Target, capsys: pytest.CaptureFixture) -> None:
    # the application's real statements, recorded by pg_stat_statements (counters not reset after the load)
    with psycopg.connect(pg_url, autocommit=True) as app:
        for n in range(30):
            app.execute("SELECT * FROM orders WHERE customer_id = %s", [n]).fetchall()
            app.execute("SELECT count(*) FROM orders WHERE note LIKE '%%abc%%'").fetchall()
    assert main(["advise", pg_url]) == 0
    out = capsys.readouterr().out
    assert "customer_id" in out and "no index recommended" not in out
    assert "leading wildcard" in out and "statements without an index" in out
    assert main(["advise", pg_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["skipped"] and all(s["reason"] for s in data["skipped"])
    assert {w["table"] for w in data["write_costs"]} >= {"orders"}


def test_without_examples_generic_plans_give_advice_marked_generic(pg_url: str, bulk_loaded: Target) -> None:
    with psycopg.connect(pg_url, autocommit=True) as app:
        app.execute("DROP EXTENSION pg_qualstats")  # only pg_stat_statements + hypopg
        app.execute("PREPARE by_customer (int) AS SELECT * FROM orders WHERE customer_id = $1")
        for n in range(30):
            app.execute(f"EXECUTE by_customer({n})").fetchall()
            # normalized by pg_stat_statements to "interval $1": a syntax error in PREPARE unless rewritten
            app.execute("SELECT count(*) FROM orders WHERE created_at > now() - interval '1 hour'").fetchall()
    statements = bulk_loaded.workload()
    texts = " | ".join(s.query for s in statements)
    assert "PREPARE by_customer" in texts and "interval $1" in texts and not any(s.example for s in statements)
    advice = advise(bulk_loaded, statements, AdvisorPolicy())
    assert sorted(r.columns for r in advice.recommendations) == [("created_at",), ("customer_id",)], advice.skipped
    for rec in advice.recommendations:
        assert all(q.generic for q in rec.queries) and "generic plan" in rec.reason


SHAPES = """
CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL, s text NOT NULL);
INSERT INTO t SELECT g, g % 5000, g % 777, md5(g::text) FROM generate_series(1, 60000) g;
CREATE VIEW v AS SELECT id, a, b FROM t WHERE b > 3;
CREATE VIEW vv AS SELECT * FROM v WHERE id > 10;
CREATE SCHEMA "Bar"; CREATE TABLE "Bar"."Foo" (id int PRIMARY KEY, "Code" int, x int);
INSERT INTO "Bar"."Foo" SELECT g, g % 9000, g FROM generate_series(1, 60000) g;
CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, owner int);
INSERT INTO app.items SELECT g, g % 8000 FROM generate_series(1, 60000) g;
CREATE TABLE p (id int, k int, created date) PARTITION BY RANGE (created);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE TABLE p2 PARTITION OF p FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');
INSERT INTO p SELECT g, g % 6000, date '2020-01-01' + (g % 700) FROM generate_series(1, 60000) g;
CREATE INDEX p2_k_existing ON p2 (k);
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = public, app', current_database()); END $$;
ANALYZE
"""


@pytest.mark.parametrize(
    ("shape", "query", "index"),
    [
        ("view", "SELECT * FROM v WHERE a = $1", ("t", ("a",))),
        ("view over a view", "SELECT id FROM vv WHERE a = $1", ("t", ("a",))),
        ("CTE", "WITH x AS (SELECT * FROM t WHERE a = $1) SELECT * FROM x", ("t", ("a",))),
        (
            "materialized CTE",
            "WITH x AS MATERIALIZED (SELECT * FROM t WHERE a = $1) SELECT count(*) FROM x",
            ("t", ("a",)),
        ),
        ("ORDER BY ordinal", "SELECT id, b FROM t ORDER BY 2 LIMIT 10", ("t", ("b",))),
        ("ORDER BY alias", "SELECT id, b AS bee FROM t ORDER BY bee LIMIT 10", ("t", ("b",))),
        ("quoted schema", 'SELECT * FROM "Bar"."Foo" WHERE "Code" = $1', ("Bar.Foo", ("Code",))),
        ("other schema", "SELECT * FROM app.items WHERE owner = $1", ("app.items", ("owner",))),
        ("on the search path", "SELECT * FROM items WHERE owner = $1", ("app.items", ("owner",))),
        ("PREPARE text", "PREPARE q1 (int) AS SELECT * FROM t WHERE b = $1", ("t", ("b",))),
        ("partitioned", "SELECT * FROM p WHERE k = $1", ("p", ("k",))),
    ],
)
def test_statement_shapes_get_their_index(pg_url: str, shape: str, query: str, index: tuple) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SHAPES)
    with open_target(pg_url) as target:
        advice = advise(target, [stmt(query, 100, 10.0)])
    assert [(r.table, r.columns) for r in advice.recommendations] == [index], (shape, advice.skipped)


def test_partitioned_table_is_indexed_online_without_duplicates(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SHAPES)
    with open_target(pg_url) as target:
        (rec,) = advise(target, [stmt("SELECT * FROM p WHERE k = $1", 100, 10.0)]).recommendations
        assert "ON ONLY" in rec.ddl and "ATTACH PARTITION" in rec.ddl and "CONCURRENTLY" in rec.ddl
        result = target.create_index(rec.spec)
        assert result.status == "created", result.error
        assert target.create_index(rec.spec).status == "exists"
        on_p2 = [ix.name for ix in target.indexes(["p2"]) if ix.columns == ("k",)]
        assert on_p2 == ["p2_k_existing"]  # the partition's own index was attached, not duplicated
        plan = target.explain("SELECT * FROM p WHERE k = 7")
        assert {s.index for s in plan.scans} >= {"p2_k_existing"}
        assert target.drop_index("p", rec.spec.name).status == "dropped"  # a revert works too
        assert not [ix for ix in target.indexes(["p1"]) if ix.columns == ("k",)]


MERGE_DATA = """
CREATE TABLE bookings (id bigint PRIMARY KEY, room_id int NOT NULL, created_at timestamptz NOT NULL, note text);
INSERT INTO bookings SELECT g, g % 2000, now() - g * interval '10 seconds', repeat('x', 80)
  FROM generate_series(1, 300000) g;
CREATE TABLE sessions (id bigint PRIMARY KEY, guest_id int NOT NULL, token text NOT NULL,
  created_at timestamptz NOT NULL);
INSERT INTO sessions SELECT g, g % 30000, md5(g::text) || md5((g + 1)::text), now() - g * interval '1 minute'
  FROM generate_series(1, 150000) g;
ANALYZE
"""
MERGE_WORK = [
    stmt("SELECT * FROM bookings WHERE created_at > now() - interval '1 hour'", 100, 10.0),
    stmt("SELECT * FROM bookings WHERE room_id = $1 AND created_at > now() - interval '1 hour'", 100, 10.0),
    stmt("SELECT id, token, created_at FROM sessions WHERE guest_id = $1", 100, 10.0),
]


def test_one_merged_index_serves_two_statements_no_wide_include_same_after_vacuum(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(MERGE_DATA)
    sets = []
    for vacuum in (False, True):
        if vacuum:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        with open_target(pg_url) as target:
            advice = advise(target, MERGE_WORK)
        sets.append(sorted((r.table, r.columns, r.include) for r in advice.recommendations))
    # (created_at, room_id) instead of (created_at) + (room_id, created_at); the long text token is
    # never an INCLUDE column; VACUUM (all-visible pages make index-only scans cheap) changes nothing
    assert sets[0] == [("bookings", ("created_at", "room_id"), ()), ("sessions", ("guest_id",), ())]
    assert sets[1] == sets[0]
