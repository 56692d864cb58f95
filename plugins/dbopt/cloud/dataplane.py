"""A local data plane for the Cloud Run stand-in: the serving side of Cloud Run, on this machine.

The stand-in (``dbopt.cloud.standin``) keeps services, revisions and traffic but serves no requests. Every
``poll_s`` the data plane reads each watched service through the Cloud Run Admin API (Google's client) and
- runs one process of ``command`` (default: the demo service) per Ready revision that has traffic or a tag,
  with that revision's container env plus what Cloud Run sets (``PORT``, ``K_SERVICE``, ``K_REVISION``,
  ``K_CONFIGURATION``) and ``LOCATION`` (the region): its metrics carry revision, service and location;
- stops the process of a revision that left the traffic list (or restarts one that died);
- writes Prometheus file_sd targets (``targets.json``, replaced atomically) beside a scrape config
  (``prometheus.yml``), so a real Prometheus scrapes the processes as they come and go;
- sends bounded load: every ``interval_s`` a wave of ``concurrency`` requests per service, each routed to a
  revision by the service's current traffic percentages (smooth weighted round robin: a 10% canary gets
  every tenth request), until ``max_requests`` were sent or it is stopped;
- keeps ``status.json``: processes, traffic split and the requests sent per revision and HTTP status.

Images are not run: every revision runs ``command``. Load goes to loopback only.

Run: ``python -m dbopt.cloud.dataplane --endpoint http://127.0.0.1:8086 --service PROJECT/REGION/NAME``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from google.api_core.exceptions import GoogleAPICallError

from dbopt.cloud.cloudrun import CloudRun
from dbopt.cloud.gcp import CloudError, GcpSettings
from dbopt.stack import free_port
from dbopt.targets.base import Data
from include.demo_service.load import get_status

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]
DEMO_SERVICE = (sys.executable, str(ROOT / "include" / "demo_service" / "app.py"))
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"  # Debian's package


@dataclass(frozen=True)
class Watched(Data):
    project: str
    region: str
    service: str

    @classmethod
    def parse(cls, text: str) -> Watched:
        parts = text.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"--service {text!r}: expected PROJECT/REGION/NAME, e.g. demo-project/us-central1/api")
        return cls(*parts)

    @property
    def key(self) -> str:
        return f"{self.project}/{self.region}/{self.service}"


@dataclass(frozen=True)
class Wanted(Data):
    """A revision that should be running: Ready, with traffic or a tag."""

    watched: Watched
    revision: str
    percent: int
    tags: tuple[str, ...]
    env: dict[str, str]


def observe(clients: Mapping[str, CloudRun], watched: Sequence[Watched], ready: dict[str, Any]) -> list[Wanted]:
    """The revisions to run now. ``ready`` caches revisions found Ready (a revision's config never changes)."""
    wanted = []
    for w in watched:
        client = clients[w.project]
        shares: dict[str, tuple[int, set[str]]] = {}
        for t in client.describe(w.service, w.region).traffic:  # one revision may be listed twice (LATEST + tag)
            percent, tags = shares.get(t.revision, (0, set()))
            shares[t.revision] = (percent + t.percent, tags | ({t.tag} if t.tag else set()))
        for revision, (percent, tags) in shares.items():
            if not percent and not tags:
                continue
            key = f"{w.key}/{revision}"
            if key not in ready:
                state = client.revision(w.service, w.region, revision)
                if state is None or not state.ready:
                    continue  # not serving yet (or never): Cloud Run routes nothing to it
                ready[key] = state
            wanted.append(Wanted(w, revision, percent, tuple(sorted(tags)), ready[key].env))
    return wanted


@dataclass
class Running:
    wanted: Wanted
    url: str  # loopback URL the load goes to
    target: str  # host:port Prometheus scrapes
    process: subprocess.Popen[bytes]
    log_path: Path


class Router:
    """Smooth weighted round robin (nginx's): over any run of picks, each revision's share follows its weight."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}

    def pick(self, weights: Mapping[str, int]) -> str:
        total = sum(weights.values())
        self.current = {k: self.current.get(k, 0) + w for k, w in weights.items()}
        chosen = max(weights, key=lambda k: self.current[k])
        self.current[chosen] -= total
        return chosen


@dataclass
class Plane:
    """The processes of the watched services' revisions, their scrape targets and the load sent to them."""

    clients: Mapping[str, CloudRun]
    watched: Sequence[Watched]
    workdir: Path
    command: Sequence[str] = DEMO_SERVICE
    env: Mapping[str, str] = field(default_factory=dict)  # defaults under each revision's own env
    bind: str = "127.0.0.1"  # where the processes listen
    advertise: str = "127.0.0.1"  # the host Prometheus reaches them at
    start_timeout_s: float = 30.0
    drain_s: float = 10.0  # at most this long for a revision that lost its traffic to answer what it has
    running: dict[str, Running] = field(default_factory=dict)  # "project/region/service/revision" -> process
    sent: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (service key, revision, status)
    in_flight: Counter[str] = field(default_factory=Counter)  # revision key -> requests not yet answered
    _ready: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_targets()

    def poll(self) -> None:
        """Read the services once and bring the processes in line; the API being down changes nothing."""
        try:
            wanted = observe(self.clients, self.watched, self._ready)
        except (CloudError, GoogleAPICallError, requests.RequestException) as err:
            log.warning("reading the services failed (%s); keeping what runs", err)
            return
        self.reconcile(wanted)

    def reconcile(self, wanted: Sequence[Wanted]) -> None:
        by_key = {f"{w.watched.key}/{w.revision}": w for w in wanted}
        self._stop([key for key in self.running if key not in by_key], "left the traffic list", self.drain_s)
        for key, running in list(self.running.items()):
            if running.process.poll() is not None:
                log.warning("%s exited with %s (log %s); starting it again", key, running.process.returncode,
                            running.log_path)  # fmt: skip
                self._stop([key], "exited")
        started = [self._start(key, w) for key, w in by_key.items() if key not in self.running]
        for key, running in started:
            if self._healthy(running):
                with self._lock:
                    self.running[key] = running
                log.info("serving %s (%d%%, tags %s) at %s, pid %d", key, running.wanted.percent,
                         list(running.wanted.tags), running.url, running.process.pid)  # fmt: skip
            else:
                running.process.kill()
                running.process.wait()
                log.error("%s did not answer /healthz within %.0fs; see %s", key, self.start_timeout_s,
                          running.log_path)  # fmt: skip
        with self._lock:
            for key, running in self.running.items():
                running.wanted = by_key[key]  # percentages move without a restart
        self.write_targets()
        self.write_status()

    def wave(self, routers: dict[str, Router], size: int, limit: int | None = None) -> list[tuple[str, str]]:
        """``size`` requests per service routed by its traffic (at most ``limit`` in all): (revision key, URL).
        Each is in flight until ``answered``; a revision that leaves the traffic gets none after this."""
        services: dict[str, dict[str, Running]] = {}
        out: list[tuple[str, str]] = []
        with self._lock:
            for key, running in self.running.items():
                services.setdefault(running.wanted.watched.key, {})[key] = running
            for service, revisions in services.items():
                weights = {key: r.wanted.percent for key, r in revisions.items() if r.wanted.percent > 0}
                router = routers.setdefault(service, Router())
                for _ in range(size if weights else 0):
                    if limit is not None and len(out) >= limit:
                        break
                    key = router.pick(weights)
                    self.in_flight[key] += 1
                    out.append((key, revisions[key].url))
        return out

    def answered(self, key: str, status: str) -> None:
        service, revision = key.rsplit("/", 1)
        with self._lock:
            self.in_flight[key] -= 1
            self.sent[(service, revision, status)] += 1

    def stop(self) -> None:
        self._stop(list(self.running), "data plane stopping")
        self.write_targets()
        self.write_status()

    # -- files -------------------------------------------------------------------------------------

    @property
    def targets_path(self) -> Path:
        return self.workdir / "targets.json"

    def write_targets(self) -> None:
        with self._lock:
            targets = [{"targets": [r.target], "labels": {}} for r in self.running.values()]
        _replace(self.targets_path, json.dumps(targets, indent=1))

    def write_prometheus_config(self, scrape_s: float) -> Path:
        """A scrape config for the file_sd targets (the revisions label their own series)."""
        path = self.workdir / "prometheus.yml"
        path.write_text(prometheus_config(self.targets_path, scrape_s))
        return path

    def write_status(self) -> None:
        with self._lock:
            services: dict[str, Any] = {w.key: {"revisions": {}, "requests": {}} for w in self.watched}
            for r in self.running.values():
                services[r.wanted.watched.key]["revisions"][r.wanted.revision] = {
                    "percent": r.wanted.percent, "tags": list(r.wanted.tags), "url": r.url, "pid": r.process.pid,
                    "log": str(r.log_path),
                }  # fmt: skip
            for (service, revision, status), n in sorted(self.sent.items()):
                services[service]["requests"].setdefault(revision, {})[status] = n
        _replace(self.workdir / "status.json", json.dumps({"time": time.time(), "services": services}, indent=1))

    # -- processes -----------------------------------------------------------------------------------

    def _start(self, key: str, w: Wanted) -> tuple[str, Running]:
        port = free_port()
        inherited = {k: v for k, v in os.environ.items() if k not in ("REVISION", "SERVICE", "LOCATION")}
        env = {**inherited, **self.env, **w.env} | {  # what Cloud Run sets wins over the revision's env
            "PORT": str(port),
            "HOST": self.bind,
            "K_SERVICE": w.watched.service,
            "K_REVISION": w.revision,
            "K_CONFIGURATION": w.watched.service,
            "LOCATION": w.watched.region,
        }
        log_path = self.workdir / "logs" / f"{key.replace('/', '_')}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                list(self.command), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return key, Running(w, f"http://127.0.0.1:{port}", f"{self.advertise}:{port}", process, log_path)

    def _healthy(self, running: Running) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and running.process.poll() is None:
            try:
                if requests.get(f"{running.url}/healthz", timeout=1).ok:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        return False

    def _stop(self, keys: Sequence[str], why: str, drain_s: float = 0.0) -> None:
        """No new requests; the ones in flight finish (up to ``drain_s``, as Cloud Run lets them); then SIGTERM."""
        with self._lock:
            stopping = {key: self.running.pop(key) for key in keys}
        deadline = time.monotonic() + drain_s
        while any(self.in_flight[key] for key in stopping) and time.monotonic() < deadline:
            time.sleep(0.05)
        for key, running in stopping.items():
            running.process.terminate()
            try:
                running.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
            log.info("stopped %s (%s)", key, why)


def drive_load(
    plane: Plane,
    stop: threading.Event,
    *,
    concurrency: int = 4,
    interval_s: float = 0.5,
    max_requests: int | None = None,
    timeout_s: float = 5.0,
    customers: int = 100,
) -> int:
    """Waves of ``concurrency`` requests per service, split by traffic, until stopped or ``max_requests``."""
    if concurrency < 1 or interval_s <= 0:
        raise ValueError("load: concurrency must be >= 1 and interval_s > 0")
    routers: dict[str, Router] = {}
    sent = 0

    def send(item: tuple[str, str], n: int) -> None:
        plane.answered(item[0], get_status(f"{item[1]}/orders?customer={n % customers}", timeout_s))

    with ThreadPoolExecutor(max_workers=concurrency * max(1, len(plane.watched))) as pool:
        while not stop.is_set() and (max_requests is None or sent < max_requests):
            started = time.monotonic()
            wave = plane.wave(routers, concurrency, None if max_requests is None else max_requests - sent)
            list(pool.map(send, wave, range(sent, sent + len(wave))))
            sent += len(wave)
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
    return sent


def prometheus_config(targets: Path, scrape_s: float) -> str:
    return (
        "# written by dbopt.cloud.dataplane: the revisions it runs, from file_sd targets it keeps current\n"
        f"global: {{scrape_interval: {scrape_s:g}s, evaluation_interval: {scrape_s:g}s}}\n"
        "scrape_configs:\n"
        "  - job_name: cloud-run-revisions\n"
        f"    file_sd_configs: [{{files: [{json.dumps(str(targets))}], refresh_interval: 5s}}]\n"
    )


def prometheus_command(
    config: Path, port: int, data_dir: Path, host: str = "127.0.0.1", retention: str = "1d"
) -> list[str]:
    """Prometheus on ``host:port`` with this config and a TSDB kept for ``retention``."""
    return [
        PROMETHEUS,
        f"--config.file={config}",
        f"--web.listen-address={host}:{port}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={retention}",
        "--log.level=warn",
    ]


def _replace(path: Path, text: str) -> None:
    """Write then rename: a reader (Prometheus' file_sd) never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dbopt.cloud.dataplane", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="the Cloud Run stand-in, e.g. http://127.0.0.1:8086")
    parser.add_argument("--service", action="append", required=True, metavar="PROJECT/REGION/NAME",
                        help="a service to serve (repeatable)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "dataplane",
                        help="targets.json, prometheus.yml, status.json, logs/")  # fmt: skip
    parser.add_argument("--database-url", help="DATABASE_URL unless a revision sets it (default: a SQLite file "
                        "in the workdir, which the demo service seeds)")  # fmt: skip
    parser.add_argument("--command", nargs="+", default=list(DEMO_SERVICE),
                        help="what each revision runs (give it last: it takes the rest of the line)")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="where the processes listen")
    parser.add_argument("--advertise", default="127.0.0.1", help="the host Prometheus reaches them at")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between reads of the services")
    parser.add_argument("--scrape-interval", type=float, default=5.0, help="in the generated prometheus.yml")
    parser.add_argument("--concurrency", type=int, default=4, help="requests per wave and service (0: no load)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between waves")
    parser.add_argument("--requests", type=int, help="stop the load after this many requests (default: no limit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dataplane %(levelname)s %(message)s")
    try:
        watched = [Watched.parse(s) for s in args.service]
    except ValueError as err:
        parser.error(str(err))
    if args.concurrency < 0 or args.interval <= 0 or args.poll <= 0 or args.scrape_interval <= 0:
        parser.error("--concurrency must be >= 0; --interval, --poll and --scrape-interval > 0")
    if args.requests is not None and args.requests < 1:
        parser.error(f"--requests {args.requests}: give at least 1, or leave it out for load until stopped")
    clients = {
        project: CloudRun.connect(GcpSettings(project=project, endpoint=args.endpoint.rstrip("/"), anonymous=True))
        for project in {w.project for w in watched}
    }
    workdir = args.workdir.resolve()
    env = {"DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'demo-service.db'}"}
    plane = Plane(clients, watched, workdir, args.command, env, bind=args.host, advertise=args.advertise)
    config = plane.write_prometheus_config(args.scrape_interval)
    log.info("Prometheus config %s (targets %s); status %s", config, plane.targets_path, workdir / "status.json")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    load = threading.Thread(
        target=drive_load, args=(plane, stop), name="load", daemon=True,
        kwargs={"concurrency": args.concurrency, "interval_s": args.interval, "max_requests": args.requests},
    )  # fmt: skip
    try:
        plane.poll()
        if args.concurrency:
            load.start()
        while not stop.wait(args.poll):
            plane.poll()
    finally:
        stop.set()
        if load.ident:
            load.join(timeout=30)
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
