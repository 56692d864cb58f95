"""The week-17 plan's weekly run with its three issue-17 parts: cache warming, Cloud SQL downsizing by
replica and the scaling forecast — a real DAG run (``dag.test()``) of include/plans/week17.yaml.

Against: the Cloud Run and Cloud SQL Admin stand-in (Google's client libraries), a Prometheus HTTP API
stand-in (canary figures per revision, four weeks of hourly traffic for the forecast), the real Redis on
127.0.0.1:6379 (database 13, this test's key prefix only) and the MySQL target on the local MariaDB with
the demo data. The "replica" is the same database through its own connection, as a read replica holds
the primary's data. Only what makes the run fit a test is changed from the plan file (see ``_week17``).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import yaml

from dbopt.cache.warm import WarmItem, cache_key
from dbopt.cloud.resize import STANDBY_LABEL
from dbopt.cloud.standin import StandIn
from dbopt.demo_data import generate, replay
from dbopt.targets import open_target
from tests.dag_runs import connection_env, run_plan, states
from tests.prometheus_standin import RevisionPrometheus
from tests.test_cache import REDIS_DB, REDIS_URL

# serial: runs alone after the parallel tests (Makefile); it resets server-wide statement statistics and
# reads Redis INFO counters, which are server-wide too
pytestmark = [pytest.mark.airflow, pytest.mark.serial]
ROOT = Path(__file__).resolve().parents[1]
PROJECT, PRIMARY, BIG = "ion-mentoring", "ion-primary", "db-custom-16-32768"
SCALE = 0.02  # as the weekly MariaDB run: indexes matter, runs stay quick


def traffic(t: float) -> float:
    """Peak concurrency of the hour ending at ``t``: 100 + 10 × that hour's UTC hour of day."""
    return 100.0 + 10 * datetime.fromtimestamp(t - 3600, UTC).hour


def _week17(prefix: str) -> str:
    plan = yaml.safe_load((ROOT / "include" / "plans" / "week17.yaml").read_text())
    plan.pop("maintenance_window")  # the test runs at any hour (the window has its own tests)
    plan["health_gate"]["on_missing"] = "ignore"  # the local MariaDB is no replica: no replication lag
    plan["workload"] |= {"min_mean_ms": 0, "min_calls": 2, "top_n": 12}  # the demo's small tables are fast
    plan["indexes"] |= {"min_table_rows": 1000, "lock_timeout_s": 2, "retries": 1}
    plan["benchmark"] |= {"from_workload": 4, "iterations": 10, "warmup": 1}
    plan["monitor"] |= {"duration_s": 8, "interval_s": 1, "required_passes": 2}
    # the stand-in answers every increase() with 1000 (pool_timeouts would always fail); the local MariaDB
    # is no replica (replication_lag_s stays inconclusive, so the canary would roll back to the safe state)
    plan["monitor"]["rules"] = [r for r in plan["monitor"]["rules"]
                                if r["metric"] not in ("pool_timeouts", "replication_lag_s")]  # fmt: skip
    # the cache's own hit ratio (Redis INFO stats) as a canary figure; the reader misses until the warming
    plan["monitor"]["rules"].append({"metric": "cache_hit_ratio", "op": "<", "threshold": 0, "scope": "service",
                                     "source": "redis", "window_s": 60})  # fmt: skip
    plan["cache"] |= {"key_template": f"{prefix}:{{plan}}:{{name}}:{{digest}}", "hit_ratio_window_s": 2,
                      "from_workload": 4}  # fmt: skip
    return yaml.safe_dump(plan, sort_keys=False)


@pytest.fixture
def mysql_demo(mysql_url: str) -> str:
    generate(mysql_url, scale=SCALE)
    with open_target(mysql_url) as target:
        target.reset_workload()
    replay(mysql_url, statements=200, scale=SCALE)
    return mysql_url


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StandIn, RevisionPrometheus]]:
    with StandIn(lro_polls=1) as standin, RevisionPrometheus(lambda _: 0.0, traffic) as prometheus:
        standin.run.seed(PROJECT, "us-central1", "ion-api")
        standin.sql.seed(PROJECT, PRIMARY, tier=BIG, database_version="MYSQL_8_0")
        gcp = json.dumps({"conn_type": "google_cloud_platform", "extra": standin.extra(PROJECT)})
        monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_RUN", gcp)
        monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_SQL", gcp)
        monkeypatch.setenv(
            "AIRFLOW_CONN_PROMETHEUS_DEFAULT",
            json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": prometheus.port}),
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_REDIS_DEFAULT",
            json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": 6379, "extra": {"db": REDIS_DB}}),
        )
        yield standin, prometheus


@pytest.fixture
def cache_reader() -> Iterator[tuple[redis.Redis, str, threading.Event]]:
    """The application's reads of the persona catalog (a miss until it is warmed), for the whole run."""
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"dbopt-test-{uuid.uuid4().hex[:10]}"
    sql = yaml.safe_load((ROOT / "include" / "plans" / "week17.yaml").read_text())["cache"]["statements"][0]["sql"]
    key = cache_key(f"{prefix}:{{plan}}:{{name}}:{{digest}}", WarmItem("persona_catalog", sql), plan="week17",
                    target=PRIMARY)  # fmt: skip
    stop = threading.Event()

    def read() -> None:
        while not stop.wait(0.01):
            client.get(key)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield client, prefix, stop
    stop.set()
    reader.join(5)
    for found in client.scan_iter(match=f"{prefix}:*"):
        client.delete(found)
    client.close()


@pytest.fixture
def week17(mysql_demo, services, cache_reader, monkeypatch) -> tuple[StandIn, redis.Redis, str, str]:
    """(the Google stand-in, the test's Redis client, its key prefix, the database URL) with every connection set."""
    monkeypatch.setenv(*connection_env("ion_replica_mysql", mysql_demo))
    return services[0], cache_reader[0], cache_reader[1], mysql_demo


def test_week17_run_warms_the_cache_resizes_by_replica_and_forecasts_scaling(week17, tmp_path, monkeypatch) -> None:
    standin, client, prefix, mysql_demo = week17
    for name, until in (("ion-old", time.time() - 60), ("ion-young", time.time() + 3600)):  # earlier resizes' standbys
        standin.sql.seed(PROJECT, name, tier=BIG, database_version="MYSQL_8_0")
        standin.sql.instances[(PROJECT, name)]["settings"]["userLabels"] = {STANDBY_LABEL: str(int(until))}
    run, record = run_plan(_week17(prefix), mysql_demo, tmp_path, monkeypatch)
    st = states(run)
    assert str(run.state) == "success", st
    monitor = record["canaries"]["ion-api/us-central1"]["monitor"]
    assert monitor["decision"] == "promote", st
    redis_rule = next(e for e in monitor["evidence"]["results"] if e["rule"].startswith("cache_hit_ratio[service]"))
    assert redis_rule["verdict"] == "pass" and redis_rule["requests"] > 0, redis_rule  # measured, not missing
    assert st["warm_cache"] == st["scaling_forecast"] == st["ion-primary.cloud_sql_resize"] == "success", st

    cache = record["tasks"]["warm_cache"]
    assert cache["items"] >= 1 and cache["bytes"] > 0 and cache["seconds"] > 0 and not cache["skipped"], cache
    keys = [k["key"] for k in cache["keys"]]
    assert any(":persona_catalog:" in k for k in keys)
    assert all(k.startswith(f"{prefix}:week17:") for k in keys)
    assert all(0 < client.ttl(k) <= 14400 for k in keys)  # written with the plan's TTL
    before, after = cache["hit_ratio_before"], cache["hit_ratio_after"]
    assert before["misses"] > 0 and after["hits"] > 0, cache  # the reader missed before, hits after
    assert after["ratio"] > before["ratio"], cache

    resize = record["targets"][PRIMARY]["cloud_sql_resize"]
    assert resize["previous_tier"] == BIG and resize["tier"] == "db-custom-8-16384"
    assert resize["benchmark"]["comparison"]["queries"], resize["benchmark"]
    instances = {name: i for (_, name), i in standin.sql.instances.items()}
    assert {a["instance"]: a["action"] for a in resize["standbys"]} == {"ion-old": "deleted", "ion-young": "kept"}
    assert "ion-old" not in instances and "ion-young" in instances  # never before its standby time
    if resize["decision"] == "switched":  # the same data: the replica holds unless the machine is noisy
        assert instances[PRIMARY]["settings"]["userLabels"][STANDBY_LABEL].isdigit()
        assert instances["ion-primary-resized"]["settings"]["tier"] == "db-custom-8-16384"
    else:
        assert resize["decision"] == "not_switched" and "ion-primary-resized" not in instances, resize

    (forecast,) = record["tasks"]["scaling_forecast"]["services"]
    hour = record["tasks"]["scaling_forecast"]["hour_start"]
    peak = 100.0 + 10 * datetime.fromtimestamp(hour, UTC).hour
    assert (forecast["service"], forecast["region"], forecast["chosen"]) == ("ion-api", "us-central1", "forecast")
    assert forecast["forecast"]["weeks_seen"] == 4 and forecast["forecast"]["peak"] == pytest.approx(peak)
    wanted = min(max(math.ceil(peak / 80 * 1.2 - 1e-9), 2), forecast["fixed"]["max_instances"])
    assert forecast["bounds"]["min_instances"] == wanted

    (report,) = (tmp_path / "reports").glob("week17/*/report.md")
    text = report.read_text()
    assert "## Cache warming" in text and f"Wrote {cache['items']} keys" in text
    assert "Hit ratio before warming" in text and "Hit ratio after warming" in text
    assert "### Cloud SQL downsizing by replica" in text and f"**{resize['decision']}**" in text
    assert "| query | primary n |" in text
    assert "## Scaling for the next hour" in text and f"| {forecast['forecast']['min_instances']} | forecast |" in text
    assert "standby `ion-old`" in text and "standby `ion-young`" in text and "h left" in text
    html = report.with_name("report.html").read_text()
    assert all(h in html for h in ("<h2>Cache warming</h2>", "<h3>Cloud SQL downsizing by replica</h3>",
                                   "<h2>Scaling for the next hour</h2>"))  # fmt: skip


def test_week17_dry_run_lists_what_it_would_warm_and_every_resize_step(week17, tmp_path, monkeypatch) -> None:
    standin, client, prefix, mysql_demo = week17
    run, record = run_plan(_week17(prefix), mysql_demo, tmp_path, monkeypatch, conf={"dry_run": True})
    assert str(run.state) == "success", states(run)
    cache = record["tasks"]["warm_cache"]
    assert cache["dry_run"] and cache["items"] >= 1 and cache["hit_ratio_before"] is None, cache
    assert not list(client.scan_iter(match=f"{prefix}:*"))  # nothing written
    resize = record["targets"][PRIMARY]["cloud_sql_resize"]
    assert resize["decision"] == "dry_run" and resize["active_instance"] == PRIMARY
    assert [(s["name"], s["status"]) for s in resize["steps"]] == [
        ("check", "planned"), ("create_replica", "planned"), ("benchmark", "planned"), ("promote", "planned"),
        ("standby", "planned")]  # fmt: skip
    assert set(standin.sql.instances) == {(PROJECT, PRIMARY)}  # nothing created
    text = next((tmp_path / "reports").glob("week17/*/report.md")).read_text()
    assert "Dry run: would write" in text and "create_replica (planned)" in text
