"""Fixtures for the metrics tests: demo service processes, a throwaway Prometheus, bounded load.

Import what a test module needs (``from tests.metrics_fixtures import demo_stack, loaded``); kept out
of conftest.py on purpose. Everything binds to 127.0.0.1 on free ports, lives in a temporary directory
and is stopped in teardown. Prometheus is the Debian package (``apt-get install prometheus``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from dbopt.cloud.dataplane import PROMETHEUS, prometheus_command
from dbopt.metrics.sources import MetricSource, MetricSourceError, Sample, Series
from dbopt.stack import free_port
from include.demo_service.app import seed
from include.demo_service.load import LoadResult, run_load


class StaticSource(MetricSource):
    """In-memory source for unit tests: ``series[(metric, scope)] = ([(t, value), …], requests)``.

    A value may be a callable of the query's end time (to script how figures change); ``fail`` makes
    every query raise like an unreachable backend. ``calls`` records what was asked.
    """

    kind = "static"

    def __init__(
        self, series: dict[tuple[str, str], tuple[list[tuple[float, float]], float | None]], fail: bool = False
    ):
        self.series = series
        self.metrics = frozenset(m for m, _ in series)
        self.fail = fail
        self.calls: list[tuple[str, str, float, float | None]] = []

    def query(self, metric: str, scope: str, window_s: float, *, end: float | None = None) -> Series:
        self.calls.append((metric, scope, window_s, end))
        if self.fail:
            raise MetricSourceError("static source: backend down")
        points, requests = self.series.get((metric, scope), ([], 0.0))
        if callable(points):
            points, requests = points(end)
        return Series(
            metric, scope, tuple(Sample(t, v) for t, v in points), requests, self.kind, f"{metric}{{{scope}}}"
        )

    def to_config(self) -> dict:
        raise NotImplementedError("a StaticSource lives in the test process only")


ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "include" / "demo_service" / "app.py"
SCRAPE_S = 1
QUERY_DELAY_MS = 30  # each request holds its connection this long: pool waits become visible


@dataclass
class DemoProcess:
    revision: str
    url: str
    process: subprocess.Popen[str]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_demo(database_url: str, revision: str, pool_size: int, pool_timeout_s: float = 30.0) -> DemoProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REVISION": revision,
        "DB_POOL_SIZE": str(pool_size),
        "DB_POOL_TIMEOUT": str(pool_timeout_s),
        "DB_QUERY_DELAY_MS": str(QUERY_DELAY_MS),
        "PORT": "0",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=subprocess.PIPE, text=True)
    first = [""]
    reader = threading.Thread(target=lambda: first.__setitem__(0, proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=30)
    if not first[0].startswith("listening on "):
        proc.kill()
        pytest.fail(f"demo service {revision} did not start (exit {proc.poll()}, said {first[0]!r})")
    return DemoProcess(revision, first[0].split()[-1], proc)


@contextmanager
def prometheus(
    targets: Sequence[str] = (), config: Path | None = None, data: Path | None = None, retention: str = "1d"
) -> Iterator[str]:
    """A Prometheus on a free loopback port scraping ``targets`` (host:port) every second, or run with
    ``config`` (e.g. the data plane's file_sd config); ``data``: an existing TSDB (e.g. backfilled with
    promtool; ``retention`` must cover it); yields its URL."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed: apt-get install -y --no-install-recommends prometheus")
    work = Path(tempfile.mkdtemp(prefix="dbopt-prom-"))
    if config is None:
        config = work / "prometheus.yml"
        listed = ", ".join(f'"{t}"' for t in targets)
        config.write_text(
            f"global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\n"
            f"scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [{listed}]\n"
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "prometheus.log").open("w")
    command = prometheus_command(config, port, data or work / "data", retention=retention)
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 30, "Prometheus ready", work)
        expected = len(targets)
        if expected:
            _wait_until(lambda: _up_targets(url) == expected, 30, f"Prometheus scraping {expected} targets", work)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def _up_targets(url: str) -> int:
    result = requests.get(f"{url}/api/v1/query", params={"query": "sum(up)"}, timeout=2).json()["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def _wait_until(ok, timeout_s: float, what: str, work: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(0.3)
    log = (work / "prometheus.log").read_text()[-2000:] if (work / "prometheus.log").exists() else ""
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}; prometheus log:\n{log}")


@dataclass
class DemoStack:
    prometheus_url: str
    services: dict[str, DemoProcess]  # revision -> process

    def url(self, revision: str) -> str:
        return self.services[revision].url


# Revisions: the baseline and a good canary have 10 connections; the bad canary has one, given up
# after 50 ms, so a wave of concurrent requests queues and times out; the idle canary gets no traffic.
REVISIONS = {
    "baseline": {"pool_size": 10},
    "canary-good": {"pool_size": 10},
    "canary-bad": {"pool_size": 1, "pool_timeout_s": 0.05},
    "canary-idle": {"pool_size": 10},
}


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """Four demo service revisions on one SQLite demo db, and a Prometheus scraping them every second."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    seed(db_url, rows=2000)
    services: dict[str, DemoProcess] = {}
    try:
        for revision, options in REVISIONS.items():
            services[revision] = start_demo(db_url, revision, **options)
        targets = [s.url.removeprefix("http://") for s in services.values()]
        with prometheus(targets) as url:
            yield DemoStack(url, services)
    finally:
        for service in services.values():
            service.stop()


@contextmanager
def loaded(urls: Sequence[str], duration_s: float, concurrency: int = 4, interval_s: float = 0.5) -> Iterator[dict]:
    """Bounded background load on each URL while the block runs; yields {url: LoadResult} (filled at exit)."""
    stop = threading.Event()
    results: dict[str, LoadResult] = {}
    cap = int(duration_s / interval_s + 1) * concurrency

    def drive(url: str) -> None:
        results[url] = run_load(
            url, concurrency=concurrency, requests=cap, duration_s=duration_s, interval_s=interval_s, stop=stop
        )

    threads = [threading.Thread(target=drive, args=(u,), daemon=True) for u in urls]
    for t in threads:
        t.start()
    try:
        yield results
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
