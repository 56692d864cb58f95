"""Shared fixtures: fresh databases on the real servers (see scripts/test-services.sh).

A server that cannot be reached fails the test with the command to start it: integration tests
never skip silently.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pymysql
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The project-local Airflow home `make test` migrates; set before anything imports airflow.
for key, value in {
    "AIRFLOW_HOME": str(ROOT / ".airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    # the run history of test runs goes to a throwaway file, not the project's var/history.db
    "DBOPT_HISTORY_URL": f"sqlite:///{tempfile.mkdtemp(prefix='dbopt-history-')}/history.db",
}.items():
    os.environ.setdefault(key, value)


def _own_metadata_db(worker: str) -> None:
    """Under pytest-xdist, each worker's `dag.test()` and `airflow` subprocesses get their own copy of
    the migrated SQLite metadata database: two processes writing one SQLite file meet "database is
    locked" as soon as their transactions overlap."""
    source = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in os.environ or not source.exists():
        return
    home = tempfile.mkdtemp(prefix=f"dbopt-airflow-{worker}-")
    atexit.register(shutil.rmtree, home, True)
    copy = Path(home) / "airflow.db"
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{copy}"


if os.environ.get("PYTEST_XDIST_WORKER"):
    _own_metadata_db(os.environ["PYTEST_XDIST_WORKER"])

DEMO_SCALE = 0.1  # the SQLite demo at ~25k rows: indexes matter, runs stay quick
PG_ADMIN = os.environ.get("DBOPT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MY_HOST = os.environ.get("DBOPT_TEST_MYSQL_HOST", "127.0.0.1")


def _unreachable(what: str, err: Exception, how: str) -> None:
    pytest.fail(f"{what} is not reachable ({err}). Run `make services` (scripts/test-services.sh) or: {how}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database with pg_stat_statements and hypopg; dropped afterwards."""
    name = f"dbopt_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as err:
        _unreachable("PostgreSQL", err, "pg_ctlcluster --skip-systemctl-redirect 15 main start")
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as conn:
        for ext in ("pg_stat_statements", "hypopg", "pg_qualstats"):
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
    try:
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A new, empty MariaDB database (performance_schema on); dropped afterwards."""
    name = f"dbopt_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = pymysql.connect(host=MY_HOST, user="root", autocommit=True)
    except pymysql.err.OperationalError as err:
        _unreachable("MariaDB", err, "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd")
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        yield f"mysql://root@{MY_HOST}:3306/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'target.db'}"


@pytest.fixture
def sqlite_demo(tmp_path) -> str:
    """The SQLite demo database (seed 003's worklogs) with a replayed workload in its query log."""
    from dbopt.demo_data import generate, replay

    url = f"sqlite:///{tmp_path / 'worklogs.db'}"
    generate(url, scale=DEMO_SCALE)
    replay(url, statements=300, scale=DEMO_SCALE)
    return url
