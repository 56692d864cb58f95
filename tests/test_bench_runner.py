"""The benchmark runner on real databases: a 50k-row SQLite file, and MariaDB for the A/B toggle."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import numpy as np
import pytest

from dbopt.bench import (
    MAX_KEPT_SAMPLES,
    BenchQuery,
    BenchResult,
    Comparison,
    QueryResult,
    ab_interleaved,
    check_plan_targets,
    compare,
    interleave_targets,
    measure,
    summarize,
)
from dbopt.targets import open_target
from dbopt.targets.base import Target, TargetError

# serial: runs alone after the parallel tests (Makefile); its verdicts are timings, taken alone
pytestmark = pytest.mark.serial

ROWS = 50_000
CUSTOMERS = 5_000

BY_CUSTOMER = BenchQuery(
    "by_customer", [f"SELECT id, amount FROM orders WHERE customer_id = {c}" for c in (17, 1234, 4321)]
)
STATUS_TOTALS = BenchQuery("status_totals", "SELECT count(*), sum(amount) FROM orders WHERE status = 'open'")
QUICK = {"iterations": 6, "warmup": 2, "rounds": 4}  # 24 samples per query per arm


@pytest.fixture
def sqlite_target(sqlite_url) -> Iterator[Target]:
    with open_target(sqlite_url) as target:
        target.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INT, status TEXT, amount REAL)")
        # customer_id: 10 rows per value (selective); status: two values (not selective)
        target.execute(
            "INSERT INTO orders WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)"
            f" SELECT i, i % {CUSTOMERS}, CASE WHEN i % 2 THEN 'open' ELSE 'closed' END, (i * 7919) % 10000 / 100.0"
            " FROM seq",
            [ROWS],
        )
        yield target


def test_measure_opens_a_url_itself(sqlite_target, sqlite_url):
    result = measure(sqlite_url, [STATUS_TOTALS], iterations=2, warmup=0, rounds=1)
    assert result.dialect == "sqlite" and result.query("status_totals").summary.n == 2


def test_index_on_selective_column_is_kept(sqlite_target):
    before = measure(sqlite_target, [BY_CUSTOMER], **QUICK)
    sqlite_target.execute("CREATE INDEX ix_orders_customer ON orders (customer_id)")
    after = measure(sqlite_target, [BY_CUSTOMER], **QUICK)

    result = compare(before, after)

    assert result.verdict == "keep", result.reason
    evidence = result.query("by_customer")
    assert evidence.served and evidence.verdict == "improved"
    assert evidence.result.ci_high < 0.5  # a full scan against an index lookup
    assert result.reason == "improved: by_customer; none regressed"


def synthetic(medians_ms: dict[str, float], seed: int) -> BenchResult:
    """A result from known samples, for the keep/revert rules alone (no drift between measurements)."""
    rng = np.random.default_rng(seed)
    queries = []
    for name, median in medians_ms.items():
        samples = tuple(float(x) for x in rng.lognormal(np.log(median), 0.1, 30))
        queries.append(QueryResult(name, summarize(samples), samples, len(samples), 1))
    return BenchResult("sqlite", "synthetic", "t0", "t1", 30, 0, 1, seed, tuple(queries))


@pytest.mark.parametrize(
    ("after", "served", "verdict", "reason"),
    [
        ({"a": 1.0, "b": 10.0}, None, "keep", "improved: a; none regressed"),
        ({"a": 1.0, "b": 10.0}, ["b"], "revert", "no query served by the change improved (b=no_change)"),
        ({"a": 1.0, "b": 20.0}, ["a"], "revert", "regressed: b"),
        ({"a": 10.0, "b": 10.0}, None, "revert", "no query served by the change improved (a=no_change, b=no_change)"),
    ],
)
def test_keep_needs_a_served_improvement_and_no_regression(after, served, verdict, reason):
    result = compare(synthetic({"a": 10.0, "b": 10.0}, seed=1), synthetic(after, seed=2), served=served)
    assert (result.verdict, result.reason) == (verdict, reason)


def test_index_on_unselective_column_is_reverted_with_evidence(sqlite_target):
    before = measure(sqlite_target, [STATUS_TOTALS], **QUICK)
    sqlite_target.execute("CREATE INDEX ix_orders_status ON orders (status)")
    after = measure(sqlite_target, [STATUS_TOTALS], **QUICK)

    result = compare(before, after)

    assert result.verdict == "revert"
    evidence = result.query("status_totals").result
    assert evidence.verdict in ("no_change", "regressed"), evidence.reason
    assert evidence.p_value is not None and evidence.ci_low is not None
    assert evidence.before.n == evidence.after.n == 24
    assert "status_totals" in result.reason and "ms" in evidence.reason


def test_result_records_how_it_was_measured_and_round_trips_as_json(sqlite_target):
    result = measure(sqlite_target, [BY_CUSTOMER, STATUS_TOTALS], iterations=3, warmup=1, rounds=2)

    assert result.dialect == "sqlite"
    assert result.started_at <= result.finished_at
    assert "shuffled per round (seed 0)" in result.method
    by_customer = result.query("by_customer")
    assert by_customer.samples_total == by_customer.summary.n == len(by_customer.samples) == 6
    assert by_customer.variants == 3
    assert BenchResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    comparison = compare(result, result)
    assert comparison.method.startswith("Mann-Whitney U two-sided, bootstrap 95% CI of median ratio")
    assert Comparison.from_dict(json.loads(json.dumps(comparison.to_dict()))) == comparison


def test_order_is_shuffled_per_round_deterministically_and_variants_cycle(sqlite_target):
    sent: list[str] = []
    timed = sqlite_target.timed

    def recording(sql: str) -> float:
        sent.append(sql)
        return timed(sql)

    sqlite_target.timed = recording
    measure(sqlite_target, [BY_CUSTOMER, STATUS_TOTALS], iterations=3, warmup=0, rounds=2, seed=3)
    first, sent[:] = list(sent), []
    measure(sqlite_target, [BY_CUSTOMER, STATUS_TOTALS], iterations=3, warmup=0, rounds=2, seed=3)

    assert sent == first
    rounds = [first[:6], first[6:]]
    assert rounds[0] != rounds[1]  # each round has its own order
    assert all(sum(q == STATUS_TOTALS.sql for q in r) == 3 for r in rounds)
    assert [q for q in first if q != STATUS_TOTALS.sql] == [*BY_CUSTOMER.variants, *BY_CUSTOMER.variants]


def test_failing_query_is_named_with_its_variant(sqlite_target):
    broken = BenchQuery("broken", ["SELECT count(*) FROM orders", "SELECT * FROM no_such_table"])
    with pytest.raises(TargetError, match=r"benchmark query 'broken' \(variant 1\) failed"):
        measure(sqlite_target, [broken], iterations=2, warmup=0, rounds=1)


def test_raw_samples_are_bounded(sqlite_target):
    tiny = BenchQuery("one", "SELECT 1")
    result = measure(sqlite_target, [tiny], iterations=MAX_KEPT_SAMPLES + 500, warmup=0, rounds=1)
    kept = result.query("one")
    assert kept.samples_total == kept.summary.n == MAX_KEPT_SAMPLES + 500
    assert len(kept.samples) == MAX_KEPT_SAMPLES


def test_ab_interleaved_runs_abba_and_leaves_the_change_off(sqlite_target):
    switches: list[bool] = []

    def toggle(on: bool) -> None:
        switches.append(on)
        if on:
            sqlite_target.execute("CREATE INDEX ix_orders_customer ON orders (customer_id)")
        else:
            sqlite_target.execute("DROP INDEX IF EXISTS ix_orders_customer")

    result = ab_interleaved(sqlite_target, [BY_CUSTOMER], toggle, rounds=4, iterations=6, warmup=1)

    # warm-up A, warm-up B, then rounds AB|BA|AB|BA: no toggle at the B|B and A|A seams
    assert switches == [False, True, False, True, False, True, False, False]
    assert result.design == "ab_interleaved" and result.verdict == "keep", result.reason
    assert result.before.query("by_customer").samples_total == 24
    assert "ABBA" in result.before.method


def test_two_databases_are_interleaved_abba(sqlite_target, tmp_path):
    """A primary and its replica: blocks alternate A B | B A | A B, so a machine that slows down later in
    the run slows both arms, not whichever was measured second."""
    sqlite_target.execute(f"VACUUM INTO '{tmp_path / 'replica.db'}'")
    with open_target(f"sqlite:///{tmp_path / 'replica.db'}") as replica:
        replica.execute("CREATE INDEX ix_orders_customer ON orders (customer_id)")
        ran: list[str] = []
        for name, target in (("A", sqlite_target), ("B", replica)):
            timed = target.timed
            target.timed = lambda sql, _n=name, _t=timed: ran.append(_n) or _t(sql)  # type: ignore[method-assign]

        before, after = interleave_targets(sqlite_target, replica, [BY_CUSTOMER], rounds=3, iterations=4, warmup=1)

    blocks = [arm for arm, _ in itertools.groupby(ran)]
    assert blocks == ["A", "B", "A", "B", "A", "B"]  # warm-ups A, B; then AB, BA (one B block), AB
    assert before.query("by_customer").samples_total == after.query("by_customer").samples_total == 12
    result = compare(before, after, design="ab_interleaved")
    assert result.verdict == "keep" and "ABBA" in after.method, result.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queries": []}, "no benchmark queries"),
        ({"queries": [STATUS_TOTALS, STATUS_TOTALS]}, "repeated: status_totals"),
        ({"iterations": 0}, "need iterations ≥ 1"),
    ],
)
def test_bad_plan_is_refused_before_running(sqlite_target, kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure(sqlite_target, **{"queries": [STATUS_TOTALS], **kwargs})


def test_compare_refuses_mismatched_results(sqlite_target):
    a = measure(sqlite_target, [STATUS_TOTALS], iterations=5, warmup=0, rounds=1)
    b = measure(sqlite_target, [BY_CUSTOMER], iterations=5, warmup=0, rounds=1)
    with pytest.raises(ValueError, match="only before: \\['status_totals'\\]"):
        compare(a, b)
    with pytest.raises(ValueError, match="served names queries that were not measured: nope"):
        compare(a, a, served=["nope"])


def test_bench_query_validation():
    assert BenchQuery("q", ["SELECT 1", "SELECT 2"]).sql == ("SELECT 1", "SELECT 2")
    with pytest.raises(ValueError, match="needs a name"):
        BenchQuery("", "SELECT 1")
    with pytest.raises(ValueError, match="'q': sql must be"):
        BenchQuery("q", [])


def test_plan_targets_pass_and_fail_with_measured_values(sqlite_target):
    result = measure(sqlite_target, [BY_CUSTOMER, STATUS_TOTALS], iterations=3, warmup=1, rounds=2)

    generous = check_plan_targets(result, {"mean_ms": 15_000, "p95_ms": 25_000})
    assert generous.passed and len(generous.checks) == 4

    strict = check_plan_targets(result, {"p95_ms": 1e-6}, queries=["status_totals"])
    assert not strict.passed
    (failure,) = strict.failures()
    assert failure.query == "status_totals" and failure.metric == "p95_ms"
    assert failure.measured_ms == result.query("status_totals").summary.p95_ms > failure.limit_ms


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"avg_ms": 15}, "unknown plan target 'avg_ms'; use one of mean_ms, median_ms, p95_ms"),
        ({"p95_ms": "25"}, "'p95_ms' must be a positive number"),
        ({"p95_ms": 0}, "'p95_ms' must be a positive number"),
        ({}, "plan targets are empty"),
    ],
)
def test_plan_targets_refuse_bad_input(sqlite_target, targets, message):
    result = measure(sqlite_target, [STATUS_TOTALS], iterations=1, warmup=0, rounds=1)
    with pytest.raises(ValueError, match=message):
        check_plan_targets(result, targets)


def test_ab_interleaved_on_mariadb_with_an_ignored_index(mysql_url):
    with open_target(mysql_url) as target:
        target.execute(
            "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT, status VARCHAR(8), amount DECIMAL(8,2))"
        )
        # MariaDB's SEQUENCE engine fills 50k rows in one statement
        target.execute(
            f"INSERT INTO orders SELECT seq, seq % {CUSTOMERS}, IF(seq % 2, 'open', 'closed'),"
            f" (seq * 7919) % 10000 / 100 FROM seq_1_to_{ROWS}"
        )
        target.execute("CREATE INDEX ix_orders_customer ON orders (customer_id)")

        def toggle(on: bool) -> None:
            target.set_index_ignored("orders", "ix_orders_customer", ignored=not on)

        result = ab_interleaved(target, [BY_CUSTOMER], toggle, rounds=4, iterations=4, warmup=1)

        assert result.verdict == "keep", result.reason
        assert result.before.dialect == "mysql"
        evidence = result.query("by_customer").result
        assert evidence.verdict == "improved" and evidence.ci_high < 0.5, evidence.reason
        assert evidence.before.n == evidence.after.n == 16
        ignored = target.execute(
            "SELECT IGNORED FROM information_schema.STATISTICS"
            " WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME = 'ix_orders_customer'"
        )
        assert ignored == [("YES",)]  # the change is left off after the test
