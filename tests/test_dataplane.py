"""The local data plane (dbopt.cloud.dataplane) against the Cloud Run stand-in through Google's client: which
revisions run, with which env and labels, how load is split, what Prometheus is told to scrape."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dbopt.cloud.cloudrun import CloudRun
from dbopt.cloud.dataplane import Plane, Router, Watched, drive_load
from dbopt.cloud.gcp import GcpSettings
from dbopt.cloud.standin import StandIn
from dbopt.stack import CANARY_ENV, CANARY_SERVICE, start_cloud, stop_groups
from tests.metrics_fixtures import ROOT

PROJECT, REGION, SERVICE = "demo-project", "europe-west1", "api"
BASE = f"{SERVICE}-00001-abc"


def test_router_follows_the_percentages_request_by_request():
    router = Router()
    picks = [router.pick({"stable": 90, "canary": 10}) for _ in range(100)]
    assert Counter(picks) == {"stable": 90, "canary": 10}
    canary_at = [i for i, p in enumerate(picks) if p == "canary"]
    assert all(b - a == 10 for a, b in itertools.pairwise(canary_at))  # spread, not bunched
    assert Counter(router.pick({"stable": 75, "canary": 25}) for _ in range(8)) == {"stable": 6, "canary": 2}


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[StandIn, CloudRun, Plane]]:
    with StandIn() as standin:
        standin.run.seed(PROJECT, REGION, SERVICE, env={"DB_POOL_SIZE": "4"})
        run = CloudRun.connect(GcpSettings(project=PROJECT, endpoint=standin.endpoint, anonymous=True), poll_s=0.05)
        db = {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
        plane = Plane({PROJECT: run}, [Watched(PROJECT, REGION, SERVICE)], tmp_path / "plane", env=db, drain_s=0)
        try:
            yield standin, run, plane
        finally:
            plane.stop()


def split(plane: Plane) -> dict[str, tuple[str, int]]:
    """revision -> (URL, percent) of what runs now (one service)."""
    return {r.wanted.revision: (r.url, r.wanted.percent) for r in plane.running.values()}


def _targets(plane: Plane) -> list[str]:
    return [t for entry in json.loads(plane.targets_path.read_text()) for t in entry["targets"]]


def test_processes_follow_revisions_and_traffic(cloud):
    _, run, plane = cloud
    plane.poll()
    assert [r.wanted.watched.key for r in plane.running.values()] == [f"{PROJECT}/{REGION}/{SERVICE}"]
    ((url, percent),) = split(plane).values()
    assert percent == 100 and _targets(plane) == [url.removeprefix("http://")]
    # labelled as Cloud Run names it, with the revision's own env
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert f'db_pool_size{{location="{REGION}",revision="{BASE}",service="{SERVICE}"}} 4.0' in metrics

    deployment = run.deploy(SERVICE, REGION, run_id="r1", env={"DB_POOL_SIZE": "2"})
    plane.poll()  # tagged at 0%: started, warm, but no load yet
    now = split(plane)
    assert {rev: p for rev, (_, p) in now.items()} == {BASE: 100, deployment.new_revision: 0}
    assert len(_targets(plane)) == 2
    canary_url = now[deployment.new_revision][0]
    assert f'revision="{deployment.new_revision}"' in requests.get(f"{canary_url}/metrics", timeout=5).text

    run.shift_traffic(deployment, 10)
    plane.poll()
    assert {rev: p for rev, (_, p) in split(plane).items()} == {BASE: 90, deployment.new_revision: 10}
    stop = threading.Event()
    sent = drive_load(plane, stop, concurrency=10, interval_s=0.01, max_requests=50)
    by_revision = Counter(rev for (_, rev, status), n in plane.sent.items() for _ in range(n) if status == "200")
    assert sent == 50 and by_revision == {BASE: 45, deployment.new_revision: 5}
    assert not +plane.in_flight  # every request answered

    run.rollback(SERVICE, REGION, deployment.previous_revision)
    plane.poll()
    assert list(split(plane)) == [BASE]
    assert _targets(plane) == [url.removeprefix("http://")]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{canary_url}/healthz", timeout=2)  # its process is gone


def test_a_revision_that_never_became_ready_gets_no_process_and_a_dead_one_is_restarted(cloud):
    standin, run, plane = cloud
    plane.poll()
    standin.run.fail_next_revision()
    with pytest.raises(Exception, match="did not become ready"):
        run.deploy(SERVICE, REGION, run_id="r2", env={"DB_POOL_SIZE": "3"})
    plane.poll()
    assert list(split(plane)) == [BASE]
    (running,) = plane.running.values()
    running.process.kill()
    running.process.wait()
    plane.poll()
    (again,) = plane.running.values()
    assert again.process.pid != running.process.pid and requests.get(f"{again.url}/healthz", timeout=5).ok


def test_cli_refuses_a_malformed_service_naming_the_fix():
    result = subprocess.run(
        [sys.executable, "-m", "dbopt.cloud.dataplane", "--endpoint", "http://127.0.0.1:9", "--service", "api"],
        capture_output=True, text=True, env={"PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "expected PROJECT/REGION/NAME" in result.stderr, result.stderr


def test_the_api_being_down_keeps_what_runs(cloud):
    standin, _, plane = cloud
    plane.poll()
    before = {key: r.process.pid for key, r in plane.running.items()}
    standin.stop()
    plane.poll()  # connection refused: logged, nothing stopped
    assert {key: r.process.pid for key, r in plane.running.items()} == before


def test_make_up_starts_the_stand_in_its_data_plane_and_prometheus(tmp_path):
    """What `make up` adds to Airflow (dbopt.stack.start_cloud): Prometheus ends up with the seeded revision's
    series, labelled by the data plane and carrying the stand-in's seeded env (pool size 10)."""
    processes, urls = start_cloud(tmp_path, tmp_path)
    try:
        service, region = CANARY_SERVICE.split("/")[2], CANARY_SERVICE.split("/")[1]
        query = {"query": "db_pool_size"}
        deadline = time.monotonic() + 60
        series: list = []
        while not series and time.monotonic() < deadline:
            time.sleep(1)
            with contextlib.suppress(requests.RequestException):
                series = requests.get(f"{urls['prometheus']}/api/v1/query", params=query, timeout=2).json()["data"][
                    "result"
                ]
        assert series, f"no db_pool_size series in Prometheus; logs in {tmp_path}"
        (found,) = series
        assert {k: found["metric"][k] for k in ("revision", "service", "location")} == {
            "revision": f"{service}-00001-abc", "service": service, "location": region}  # fmt: skip
        assert found["value"][1] == CANARY_ENV["DB_POOL_SIZE"]
    finally:
        stop_groups([p.pid for p in processes.values()], grace_s=15)
    assert all(p.poll() is not None for p in processes.values())
