"""Airflow's real components on one machine: api-server (127.0.0.1), scheduler, dag-processor,
triggerer and, with CeleryExecutor, a Celery worker — for ``make up`` and the end-to-end tests. ``make up``
adds the Cloud Run stand-in, its local data plane and Prometheus (``start_cloud``).

Every component gets the same environment (one metadata database, one JWT secret, free ports), so
several stacks can run side by side on one machine. Processes run in their own sessions and are
stopped as groups: the scheduler's and the worker's children go with them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from dbopt.rest_api import USER

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StackConfig:
    home: Path  # AIRFLOW_HOME: airflow.cfg, logs, the login's password file
    metadata_url: str  # SQLAlchemy URL of the metadata database
    executor: str = "LocalExecutor"
    broker_url: str | None = None  # CeleryExecutor: redis://host:port/db
    broker_prefix: str = ""  # every broker key starts with it (cleanup, stacks side by side)
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env |= {
            "AIRFLOW_HOME": str(self.home),
            "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": "4",  # a laptop, not a cluster
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            # every component signs and checks task tokens with the same secret
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
            # log servers listen on every interface; free ports let stacks run side by side
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._port("worker_log_port")),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port("trigger_log_port")),
        }
        if self.executor == "CeleryExecutor":
            assert self.broker_url, "CeleryExecutor needs a broker_url"
            env |= {
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url.replace("+psycopg2", ""),
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.broker_prefix,
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            }
        return env | self.extra_env

    def _state(self) -> dict[str, Any]:
        path = self.home / "dbopt-stack.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _remember(self, key: str, value: Any) -> Any:
        state = self._state()
        if key not in state:
            self.home.mkdir(parents=True, exist_ok=True)
            (self.home / "dbopt-stack.json").write_text(json.dumps(state | {key: value}))
        return self._state()[key]

    def _secret(self, key: str) -> str:
        return self._remember(key, secrets.token_urlsafe(24))

    def _port(self, key: str) -> int:
        return self._remember(key, free_port())

    def password(self) -> str:
        """The login's password: generated once, kept in the home (SimpleAuthManager reads that file)."""
        if not self.password_file.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            self.password_file.write_text(json.dumps({USER: secrets.token_urlsafe(12)}))
        return json.loads(self.password_file.read_text())[USER]


def components(executor: str) -> list[list[str]]:
    commands = [["api-server"], ["scheduler"], ["dag-processor"], ["triggerer"]]
    if executor == "CeleryExecutor":
        commands.append(["celery", "worker", "--concurrency", "2"])
    return commands


class Stack:
    """The running components of one configuration; ``stop()`` ends them all."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def logs(self) -> Path:
        return self.config.home / "stack-logs"

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        airflow = str(Path(sys.executable).with_name("airflow"))
        env = self.config.environment()
        return subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=timeout, check=True)

    def start(self, only: tuple[str, ...] | None = None) -> None:
        """Migrate the metadata database, then start the components (``only``: those, by first word)."""
        self.config.password()
        self.airflow("db", "migrate")
        self.logs.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).with_name("airflow"))
        for command in components(self.config.executor):
            if only is not None and command[0] not in only:
                continue
            name = "-".join(command[:2]) if command[0] == "celery" else command[0]
            log = (self.logs / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(
                [airflow, *command], env=self.config.environment(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends its children too
            )  # fmt: skip

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def wait_until_up(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dead():
                raise RuntimeError(f"{self.dead()} exited; logs in {self.logs}")
            try:
                if requests.get(f"{self.config.url}/api/v2/monitor/health", timeout=5).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(2)
        raise TimeoutError(f"api-server not up at {self.config.url} after {timeout:.0f}s; logs in {self.logs}")

    def stop(self) -> None:
        stop_groups(self.pids().values())

    def running_groups(self) -> list[int]:
        return [pid for pid in self.pids().values() if _alive(pid)]


def stop_groups(pids: Any, grace_s: float = 30) -> None:
    """SIGTERM each process group (warm shutdown), SIGKILL what is left after the grace period."""
    groups = []
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
            groups.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while groups and time.monotonic() < deadline:
        groups = [pid for pid in groups if _alive(pid)]
        time.sleep(0.5)
    for pid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _alive(pgid: int) -> bool:
    """Whether any process of the group is left (a zombie leader of ours is reaped first)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --- make up / make down ------------------------------------------------------------------------
UP_HOME = Path(os.environ.get("DBOPT_STACK_HOME") or ROOT / "var" / "stack")
PG_ADMIN = os.environ.get("DBOPT_STACK_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def metadata_url(home: Path) -> str:
    """PostgreSQL (database dbopt_airflow) when a server answers, else a SQLite file in the home."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = 'dbopt_airflow'").fetchone():
                admin.execute("CREATE DATABASE dbopt_airflow")
    except psycopg.OperationalError as err:
        print(f"dbopt up: no PostgreSQL at {PG_ADMIN} ({err}); using SQLite for the metadata database")
        return f"sqlite:///{home / 'airflow.db'}"
    return f"postgresql+psycopg2://{PG_ADMIN.split('://', 1)[1].rsplit('/', 1)[0]}/dbopt_airflow"


# The Cloud Run service plans/canary_demo.yaml (and week17) deploy to. Its current revision holds each
# request's connection 50 ms and waits at most 20 ms for a free one: a tiny pool shows under load.
CANARY_SERVICE = "ion-mentoring/us-central1/ion-api"
CANARY_ENV = {"DB_POOL_SIZE": "10", "DB_POOL_TIMEOUT": "0.02", "DB_QUERY_DELAY_MS": "50"}


def _port(preferred: int) -> int:
    with socket.socket() as s:
        return free_port() if s.connect_ex(("127.0.0.1", preferred)) == 0 else preferred


def start_cloud(home: Path, logs: Path) -> tuple[dict[str, subprocess.Popen[bytes]], dict[str, str]]:
    """The Cloud Run stand-in, the data plane serving its revisions, Prometheus scraping them; their URLs."""
    from dbopt.cloud.dataplane import prometheus_command

    endpoint, prometheus = f"http://127.0.0.1:{_port(8086)}", f"http://127.0.0.1:{_port(9090)}"
    workdir = home / "dataplane"
    (workdir / "prometheus.yml").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
    python = [sys.executable, "-m"]
    seeded = [a for k, v in CANARY_ENV.items() for a in ("--env", f"{k}={v}")]
    commands = {
        "gcp-standin": [*python, "dbopt.cloud.standin", "--port", endpoint.rsplit(":", 1)[1],
                        "--service", CANARY_SERVICE, *seeded],
        "dataplane": [*python, "dbopt.cloud.dataplane", "--endpoint", endpoint, "--service", CANARY_SERVICE,
                      "--workdir", str(workdir), "--scrape-interval", "2", "--concurrency", "10"],
    }  # fmt: skip
    processes = {}
    for name, command in commands.items():
        log = (logs / f"{name}.log").open("ab")
        processes[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (workdir / "prometheus.yml").exists():  # the data plane writes it when it starts
        if time.monotonic() > deadline or processes["dataplane"].poll() is not None:
            stop_groups(p.pid for p in processes.values())
            raise RuntimeError(f"the data plane did not start; see {logs / 'dataplane.log'}")
        time.sleep(0.2)
    command = prometheus_command(workdir / "prometheus.yml", int(prometheus.rsplit(":", 1)[1]), workdir / "tsdb")
    with (logs / "prometheus.log").open("ab") as log:
        processes["prometheus"] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True)  # fmt: skip
    return processes, {"endpoint": endpoint, "prometheus": prometheus}


def up() -> int:
    from dbopt.demo import DEMO_DIR, prepare

    home = UP_HOME
    state = StackConfig(home=home, metadata_url="")._state()
    if state.get("pids") and any(_alive(pid) for pid in state["pids"].values()):
        print(f"dbopt up: already running at {state.get('url')} (make down first)", file=sys.stderr)
        return 1
    port = _port(int(os.environ.get("DBOPT_STACK_PORT") or 8080))  # taken (another stack?): any free port
    config = StackConfig(home=home, metadata_url=metadata_url(home), port=port)
    stack = Stack(config)
    db = DEMO_DIR / "worklogs.db"
    if not db.exists():
        print(f"dbopt up: building the demo database {db} …", flush=True)
        prepare(db, scale=float(os.environ.get("DBOPT_DEMO_SCALE", "0.5")), statements=600)
    print("dbopt up: migrating the metadata database and starting the components …", flush=True)
    stack.start()
    try:
        cloud, urls = start_cloud(home, stack.logs)
    except RuntimeError as err:
        print(f"dbopt up: {err}", file=sys.stderr)
        stack.stop()
        return 1
    pids = stack.pids() | {name: p.pid for name, p in cloud.items()}
    state = json.loads((home / "dbopt-stack.json").read_text()) | {"pids": pids, "url": config.url}
    (home / "dbopt-stack.json").write_text(json.dumps(state))
    # the connections, made the way a user makes them (README "Connections")
    gcp = json.dumps({"project": CANARY_SERVICE.split("/")[0], "endpoint": urls["endpoint"], "anonymous": True})
    prometheus_host, prometheus_port = urls["prometheus"].removeprefix("http://").split(":")
    connections = {
        "dbopt_demo": ["--conn-type", "sqlite", "--conn-host", str(db)],
        "google_cloud_run": ["--conn-type", "google_cloud_platform", "--conn-extra", gcp],
        "prometheus_default": ["--conn-type", "http", "--conn-schema", "http", "--conn-host", prometheus_host,
                               "--conn-port", prometheus_port],
    }  # fmt: skip
    for conn_id, fields in connections.items():
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "connections", "delete", conn_id],
                       env=config.environment(), capture_output=True)  # fmt: skip
        stack.airflow("connections", "add", conn_id, *fields)
    try:
        stack.wait_until_up()
    except (RuntimeError, TimeoutError) as err:
        print(f"dbopt up: {err}", file=sys.stderr)
        stop_groups(pids.values())
        return 1
    print(f"dbopt up: Airflow UI and API at {config.url}  login: {USER} / {config.password()}")
    print(f"dbopt up: Cloud Run stand-in {urls['endpoint']} ({CANARY_SERVICE}), Prometheus {urls['prometheus']}, "
          f"data plane status {home / 'dataplane' / 'status.json'}")  # fmt: skip
    print(f"dbopt up: metadata database {config.metadata_url}; logs in {stack.logs}; stop with `make down`")
    return 0


def down() -> int:
    path = UP_HOME / "dbopt-stack.json"
    pids = json.loads(path.read_text()).get("pids", {}) if path.exists() else {}
    if not pids:
        print("dbopt down: nothing started by `make up`")
        return 0
    stop_groups(pids.values())
    state = json.loads(path.read_text())
    state.pop("pids")
    path.write_text(json.dumps(state))
    print(f"dbopt down: stopped {', '.join(pids)}")
    return 0


if __name__ == "__main__":
    commands = {"up": up, "down": down}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit("usage: python -m dbopt.stack up|down")
    sys.exit(commands[sys.argv[1]]())
