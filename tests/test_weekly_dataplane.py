"""The weekly DAG's canary through the local data plane: deploy on the Cloud Run stand-in → one demo
service process per revision (``python -m dbopt.cloud.dataplane``, as users run it) with load split by the
stand-in's traffic → a real Prometheus scraping the processes → the canary analysis → promote or roll back.

The service's current revision holds each request's connection 50 ms and gives up on a busy pool after
20 ms; waves of 10 requests send 2 to a 20% canary at once. A canary with ``DB_POOL_SIZE=1`` answers one of
them 503 (a pool timeout), which the rules catch; one with a bigger pool answers both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbopt.cloud.standin import StandIn
from tests.dag_runs import canary_plan, run_plan, states
from tests.metrics_fixtures import ROOT, prometheus

pytestmark = pytest.mark.airflow
PROJECT, REGION, SERVICE = "demo-project", "us-central1", "api"
KEY = f"{PROJECT}/{REGION}/{SERVICE}"
GROUP = f"canary_{SERVICE}_{REGION}".replace("-", "_")
CURRENT = {"DB_POOL_SIZE": "10", "DB_POOL_TIMEOUT": "0.02", "DB_QUERY_DELAY_MS": "50"}


@dataclass
class Plane:
    standin: StandIn
    workdir: Path

    def status(self) -> dict:
        return json.loads((self.workdir / "status.json").read_text())["services"][KEY]


def _wait(ok, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture
def plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plane]:
    workdir = tmp_path / "dataplane"
    with StandIn() as standin:
        standin.run.seed(PROJECT, REGION, SERVICE, env=CURRENT)
        command = [sys.executable, "-m", "dbopt.cloud.dataplane", "--endpoint", standin.endpoint, "--service", KEY,
                   "--workdir", str(workdir), "--poll", "0.5", "--scrape-interval", "1", "--concurrency", "10",
                   "--interval", "0.5"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
        log = (tmp_path / "dataplane.log").open("w")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: Plane(standin, workdir).status()["revisions"], 60, "the data plane serving the service")
            with prometheus(config=workdir / "prometheus.yml") as url:
                host, port = url.removeprefix("http://").split(":")
                monkeypatch.setenv(
                    "AIRFLOW_CONN_GOOGLE_CLOUD_RUN",
                    json.dumps({"conn_type": "google_cloud_platform", "extra": standin.extra(PROJECT)}),
                )
                prom = {"conn_type": "http", "host": host, "port": int(port)}
                monkeypatch.setenv("AIRFLOW_CONN_T_PLANE_PROM", json.dumps(prom))
                yield Plane(standin, workdir)
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()
            print((tmp_path / "dataplane.log").read_text()[-3000:])


MONITOR = """\
  duration_s: 45
  interval_s: 2
  required_passes: 3
  inconclusive_limit: 5
  metrics_conn_id: t_plane_prom
  rules:
    - {{metric: error_ratio, op: ">", threshold: 0.05, scope: canary, window_s: 10, min_requests: 5}}
    - {{metric: pool_timeouts, op: ">", threshold: 0, scope: canary, window_s: 10}}"""


def _run(plane: Plane, plan_id: str, pool_size: str, pg_url: str, tmp_path: Path, monkeypatch) -> tuple:
    started = time.monotonic()
    services = [(SERVICE, REGION)]
    text = canary_plan(plan_id, PROJECT, services, "canary_percent: 20", pool_size=pool_size, monitor=MONITOR)
    run, record = run_plan(text, pg_url, tmp_path, monkeypatch)
    wall = time.monotonic() - started
    monitor = record["canaries"][f"{SERVICE}/{REGION}"]["monitor"]
    deploy = record["canaries"][f"{SERVICE}/{REGION}"]["deploy"]
    time.sleep(1.5)  # the data plane's next poll: processes and counts follow the new traffic
    status = plane.status()
    print(f"{plan_id}: wall {wall:.1f}s, decision {monitor['decision']} after "
          f"{monitor['decided_at'] - monitor['started_at']:.1f}s of analysis ({monitor['checks']} checks: "
          f"{monitor['reason']}); requests {status['requests']}")  # fmt: skip
    return run, deploy, status, monitor


def test_good_canary_through_the_data_plane_is_promoted(plane, pg_url, tmp_path, monkeypatch):
    run, deploy, status, monitor = _run(plane, "t_plane_good", "20", pg_url, tmp_path, monkeypatch)
    st = states(run)
    assert st[f"{GROUP}.promote"] == "success" and st[f"{GROUP}.rollback"] == "skipped", st
    assert monitor["decision"] == "promote" and monitor["failures"] == 0, monitor
    new = deploy["new_revision"]
    assert list(status["revisions"]) == [new]  # the old revision left the traffic list: its process stopped
    served = status["requests"][new]
    assert served.get("200", 0) >= 10 and set(served) == {"200"}, served
    # the old revision answered what it had in flight before its process stopped
    assert set(status["requests"][deploy["previous_revision"]]) == {"200"}, status["requests"]
    # the rules read this revision of this service in this region, as the data plane labelled it
    for result in monitor["evidence"]["results"]:
        assert f'location="{REGION}",revision="{new}",service="{SERVICE}"' in result["query"], result


def test_canary_with_a_one_connection_pool_is_rolled_back(plane, pg_url, tmp_path, monkeypatch):
    run, deploy, status, monitor = _run(plane, "t_plane_bad", "1", pg_url, tmp_path, monkeypatch)
    st = states(run)
    assert st[f"{GROUP}.rollback"] == "success" and st[f"{GROUP}.promote"] == "skipped", st
    assert monitor["decision"] == "rollback", monitor
    new, previous = deploy["new_revision"], deploy["previous_revision"]
    assert list(status["revisions"]) == [previous]  # the canary's process stopped with the rollback
    assert status["requests"][new].get("503", 0) > 0, status["requests"]  # what the tiny pool did under load
    assert set(status["requests"][previous]) == {"200"}, status["requests"]
    # about one request in five went to the 20% canary while it had traffic
    share = sum(status["requests"][new].values()) / sum(sum(v.values()) for v in status["requests"].values())
    assert 0.02 < share < 0.2, share
