"""Cache warming against the real Redis on 127.0.0.1:6379 (database 13, only this test's keys) and real targets."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dbopt.cache.plan_run import cache_items, warm_plan
from dbopt.cache.warm import WarmItem, hot_statements, warm
from dbopt.metrics.health_gate import health_gate
from dbopt.metrics.sources import RedisSource, source_from_config
from dbopt.plan import PlanError, load_plan, parse_plan
from dbopt.targets import open_target
from tests.dag_runs import connection_env

# serial: runs alone after the parallel tests (Makefile); Redis INFO counters are server-wide
pytestmark = pytest.mark.serial

ROOT = Path(__file__).resolve().parents[1]
REDIS_DB = 13  # dbopt's tests; other databases on the shared server are not touched
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"

PLAN = """
id: {id}
targets:
  - {{name: worklogs, conn_id: worklogs_sqlite, dialect: sqlite}}
cache:
  redis_conn_id: cache_redis
  key_template: "{prefix}:{{plan}}:{{name}}:{{digest}}"
  ttl_s: 600
  batch_size: 2
  from_workload: 4
  statements:
    - name: company
      sql: "SELECT id, name FROM companies WHERE slug = 'umbrella'"
    - name: rates
      sql:
        - "SELECT hourly_rate, currency FROM billing_rates WHERE billing_project_id = 1"
        - "SELECT hourly_rate, currency FROM billing_rates WHERE billing_project_id = 2"
  refresh: {{cron: "*/30 * * * *", timezone: Asia/Seoul, top_n: 3}}
"""


@pytest.fixture
def cache() -> Iterator[tuple[redis.Redis, str]]:
    """A client on database 13 and a key prefix of this test's own; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as err:
        pytest.fail(f"Redis on 127.0.0.1:6379 is not reachable ({err}); run `make services`")
    prefix = f"dbopt-test-{uuid.uuid4().hex[:10]}"
    yield client, prefix
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    client.close()


def _plan(prefix: str, plan_id: str = "cachetest"):
    return parse_plan(PLAN.format(id=plan_id, prefix=prefix))


def test_warm_runs_the_hot_reads_and_writes_rows_with_ttl_in_batches(
    sqlite_demo: str, cache: tuple[redis.Redis, str]
) -> None:
    client, prefix = cache
    plan = _plan(prefix)
    with open_target(sqlite_demo) as target:
        workload = target.workload()
        items = cache_items(plan.cache, workload, "sqlite")
        result = warm_plan(plan, target, client)
        expected = {i.name: target.execute(i.sql) for i in items}

    # the three listed statements, then the workload's top 4 reads (the INSERTs never) not already listed
    hot = hot_statements(workload, 4, "sqlite")
    assert [i.name for i in items[:3]] == ["company", "rates#0", "rates#1"]
    assert [i.sql for i in items[3:]] == [h.sql for h in hot if h.sql not in {i.sql for i in items[:3]}]
    assert len({i.sql for i in items}) == len(items) >= 6
    assert all(i.sql.lstrip().upper().startswith("SELECT") for i in items)
    assert result.items == len(items) and not result.skipped and not result.dry_run
    assert result.batches == math.ceil(len(items) / 2)  # batch_size 2
    assert result.seconds >= result.query_seconds + result.write_seconds > 0
    written = {k.name: k for k in result.keys}
    for name, rows in expected.items():
        key = written[name].key
        assert key.startswith(f"{prefix}:cachetest:{name}:")
        value = client.get(key)
        assert json.loads(value) == [list(r) for r in rows]
        assert 590 <= client.ttl(key) <= 600
        assert written[name].bytes == len(value) and written[name].rows == len(rows)
    assert result.bytes == sum(len(client.get(k.key)) for k in result.keys)

    again = warm_plan(plan, open_target(sqlite_demo), client, top_n=2)  # the refresh's top N: same keys again
    assert [k.key for k in again.keys] == [k.key for k in result.keys[:2]]


def test_dry_run_queries_and_writes_nothing(sqlite_demo: str, cache: tuple[redis.Redis, str]) -> None:
    client, prefix = cache
    with open_target(sqlite_demo) as target:
        result = warm_plan(_plan(prefix), target, client, dry_run=True)
    assert result.dry_run and result.items >= 6 and result.bytes == 0 and result.batches == 0
    assert list(client.scan_iter(match=f"{prefix}:*")) == []


def test_only_read_queries_run_and_failures_are_reported(sqlite_demo: str, cache: tuple[redis.Redis, str]) -> None:
    client, prefix = cache
    items = [
        WarmItem("delete", "DELETE FROM companies"),
        WarmItem("two", "SELECT 1; DELETE FROM companies"),
        WarmItem("missing", "SELECT * FROM no_such_table"),
        WarmItem("ok", "SELECT COUNT(*) FROM companies"),
    ]
    with open_target(sqlite_demo) as target:
        before = target.execute("SELECT COUNT(*) FROM companies")
        result = warm(target, client, items, plan="p", target_name="t", key_template=f"{prefix}:{{name}}:{{digest}}",
                      max_value_bytes=1000)  # fmt: skip
        assert target.execute("SELECT COUNT(*) FROM companies") == before  # nothing deleted
    reasons = {s.name: s.reason for s in result.skipped}
    assert reasons["delete"].startswith("not run: ") and reasons["two"].startswith("not run: ")
    assert all(reasons[n].endswith("only one read-only SELECT is warmed") for n in ("delete", "two"))
    assert reasons["missing"].startswith("query failed: ")
    assert [k.name for k in result.keys] == ["ok"] and result.items == 1


def test_result_over_the_size_limit_is_skipped(sqlite_demo: str, cache: tuple[redis.Redis, str]) -> None:
    client, prefix = cache
    with open_target(sqlite_demo) as target:
        result = warm(target, client, [WarmItem("big", "SELECT * FROM worklogs")], plan="p", target_name="t",
                      key_template=f"{prefix}:{{digest}}", max_value_bytes=1000)  # fmt: skip
    assert result.items == 0 and "over max_value_bytes 1000" in result.skipped[0].reason
    assert list(client.scan_iter(match=f"{prefix}:*")) == []


def test_warm_through_postgres(pg_url: str, cache: tuple[redis.Redis, str]) -> None:
    client, prefix = cache
    with open_target(pg_url) as target:
        target.execute("CREATE TABLE prefs (user_id int, k text, v text)")
        target.execute("INSERT INTO prefs VALUES (1, 'lang', 'ko'), (1, 'tz', 'Asia/Seoul'), (2, 'lang', 'en')")
        result = warm(target, client, [WarmItem("prefs", "SELECT k, v FROM prefs WHERE user_id = 1 ORDER BY k")],
                      plan="p", target_name="t", key_template=f"{prefix}:{{digest}}")  # fmt: skip
    assert json.loads(client.get(result.keys[0].key)) == [["lang", "ko"], ["tz", "Asia/Seoul"]]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.replace("  from_workload: 4\n", "").split("  statements:")[0], "nothing to warm"),
        (lambda p: p.replace("{plan}:{name}:{digest}", "{plan}:{user}"), "key_template uses ['user']"),
        (lambda p: p.replace("{plan}:{name}:{digest}", "{plan}:{name}"), "key_template needs {digest}"),
        (lambda p: p.replace("ttl_s: 600", "tll_s: 600"), "cache.tll_s: unknown field — did you mean 'ttl_s'?"),
        (lambda p: p.replace("SELECT id, name FROM companies", "DELETE FROM companies"), "one read-only SELECT"),
        (
            lambda p: p.replace("redis_conn_id: cache_redis", "redis_conn_id: cache_redis\n  target: nope"),
            "cache.target 'nope' is not a target of this plan; use one of ['worklogs']",
        ),
    ],
)
def test_cache_section_errors_name_field_and_fix(edit, message: str) -> None:
    text = edit(PLAN.format(id="cachetest", prefix="x"))
    with pytest.raises(PlanError) as err:
        parse_plan(text, "week.yaml")
    assert message in str(err.value) and "invalid plan week.yaml" in str(err.value)


def test_redis_hit_ratio_is_a_metric_source_for_the_health_gate(cache: tuple[redis.Redis, str]) -> None:
    client, prefix = cache
    source = source_from_config(RedisSource(REDIS_URL, probe_s=0.2).to_config())
    try:
        source.query("cache_hit_ratio", "service", 60)  # the first readings
        client.set(f"{prefix}:hot", "1")
        for _ in range(300):
            client.get(f"{prefix}:hot")
        for i in range(100):
            client.get(f"{prefix}:cold{i}")
        series = source.query("cache_hit_ratio", "service", 60)
        # INFO counters are server-wide: another client's lookups meanwhile move it a little
        assert series.samples[-1].value == pytest.approx(0.75, abs=0.02)
        assert series.requests >= 400
        gate = health_gate([{"metric": "cache_hit_ratio", "op": "<", "threshold": 0.8, "scope": "service",
                             "source": "redis"}], {"redis": source})  # fmt: skip
        assert gate.decision == "NO-GO" and gate.figures[0].verdict == "fail"
        idle = source.query("cache_hit_ratio", "service", 60)
        assert math.isnan(idle.samples[-1].value) or idle.samples[-1].value >= 0  # no lookups: NaN, not 0
    finally:
        source.close()
    with pytest.raises(Exception, match="answers scope 'service'"):
        RedisSource(REDIS_URL).query("cache_hit_ratio", "canary", 60)


@pytest.mark.airflow
def test_refresh_dag_runs(sqlite_demo: str, cache: tuple[redis.Redis, str], tmp_path: Path, monkeypatch) -> None:
    from dags.dbopt_cache_refresh import build_cache_dag

    client, prefix = cache
    plans = tmp_path / "plans"
    plans.mkdir()
    path = plans / "cachedag.yaml"
    path.write_text(PLAN.format(id="cachedag", prefix=prefix))
    monkeypatch.setenv("DBOPT_PLANS_DIR", str(plans))
    monkeypatch.setenv(*connection_env("worklogs_sqlite", sqlite_demo))
    monkeypatch.setenv("AIRFLOW_CONN_CACHE_REDIS", json.dumps({"conn_type": "redis", "host": "127.0.0.1",
                                                               "port": 6379, "extra": {"db": REDIS_DB}}))  # fmt: skip
    dag = build_cache_dag(load_plan(path), path)
    assert dag.dag_id == "dbopt_cache_refresh_cachedag" and dag.timetable.serialize()["timezone"] == "Asia/Seoul"
    run = dag.test()
    assert str(run.state) == "success"
    assert len(list(client.scan_iter(match=f"{prefix}:cachedag:*"))) == 3  # refresh.top_n


def test_plan_rules_read_the_hit_ratio_from_redis() -> None:
    from dbopt.pipeline import gate_rules

    text = (
        PLAN.format(id="cacherules", prefix="x")
        + "health_gate: {cache_hit_ratio_min: 0.8, cache_hit_ratio_source: redis}\n"
    )
    (rule,) = gate_rules(parse_plan(text).health_gate)
    assert rule == {"metric": "cache_hit_ratio", "op": "<", "threshold": 0.8, "scope": "service", "source": "redis"}
    without_cache = text.split("cache:")[0] + "health_gate: {cache_hit_ratio_min: 0.8, cache_hit_ratio_source: redis}\n"
    with pytest.raises(PlanError, match="cache_hit_ratio_source redis needs a cache: section"):
        parse_plan(without_cache, "week.yaml")
    wrong = "monitor: {rules: [{metric: error_ratio, op: '>', threshold: 0.1, scope: service, source: redis}]}\n"
    with pytest.raises(PlanError, match="source redis measures only the whole server's hit ratio"):
        parse_plan(PLAN.format(id="cacherules", prefix="x") + wrong, "week.yaml")
