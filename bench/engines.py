"""The benchmark's own databases: one fresh database per engine on the shared servers, and its indexes.

Each run drops and recreates ``dbopt_bench`` (PostgreSQL with pg_stat_statements, HypoPG and
pg_qualstats; MariaDB), or a fresh SQLite file under ``var/bench``, so results never depend on what
an earlier run left behind. Only secondary indexes are ever dropped (never primary keys).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql
from sqlalchemy.engine import make_url

from dbopt.targets.base import IndexInfo, Target

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "dbopt_bench"
PG_ADMIN = os.environ.get("DBOPT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("DBOPT_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/mysql")
SQLITE_DIR = ROOT / "var" / "bench"
PG_EXTENSIONS = ("pg_stat_statements", "hypopg", "pg_qualstats")


@dataclass(frozen=True)
class Engine:
    name: str  # "postgres" | "mariadb" | "sqlite" (what --only takes)
    dialect: str  # dbopt's dialect name

    def fresh(self, database: str = DATABASE) -> str:
        """Drop and recreate the benchmark database; its URL."""
        if self.name == "postgres":
            return _fresh_postgres(database)
        if self.name == "mariadb":
            return _fresh_mariadb(database)
        return _fresh_sqlite(database)

    def drop(self, database: str = DATABASE) -> None:
        """Remove the benchmark database (the shared servers are left as they were found)."""
        if self.name == "postgres":
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        elif self.name == "mariadb":
            conn = _mysql_admin()
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            conn.close()
        else:
            for path in _sqlite_files(database):
                path.unlink(missing_ok=True)


ENGINES = {e.name: e for e in (Engine("postgres", "postgres"), Engine("mariadb", "mysql"), Engine("sqlite", "sqlite"))}


def _fresh_postgres(database: str) -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(url, autocommit=True) as conn:
        for ext in PG_EXTENSIONS:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
    return url


def _mysql_admin() -> pymysql.Connection:
    u = make_url(MYSQL_ADMIN)
    return pymysql.connect(
        host=u.host, port=u.port or 3306, user=u.username, password=u.password or "", autocommit=True
    )


@contextmanager
def innodb_buffer_pool(mb: int) -> Iterator[int]:
    """The MariaDB server's buffer pool at least ``mb`` MB while the benchmark runs, then as it was.

    InnoDB reads with O_DIRECT: with the default 128 MB pool and a data set several times larger, each
    configuration's timings depend on which one scanned last (``none``'s full scans empty the pool), not
    on its indexes. Production sizes the pool to the working set; so does the benchmark (resized online)."""
    with _mysql_admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@innodb_buffer_pool_size")
        (was,) = cur.fetchone()
        if was < mb << 20:
            cur.execute(f"SET GLOBAL innodb_buffer_pool_size = {mb << 20}")
        try:
            yield max(was >> 20, mb)
        finally:
            if was < mb << 20:
                cur.execute(f"SET GLOBAL innodb_buffer_pool_size = {was}")


def _fresh_mariadb(database: str) -> str:
    conn = _mysql_admin()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}`")
    conn.close()
    return MYSQL_ADMIN.rsplit("/", 1)[0] + "/" + database


def _sqlite_files(database: str) -> list[Path]:
    db = SQLITE_DIR / f"{database}.db"
    return [db, Path(f"{db}.queries.jsonl"), Path(f"{db}-wal"), Path(f"{db}-shm")]


def _fresh_sqlite(database: str) -> str:
    SQLITE_DIR.mkdir(parents=True, exist_ok=True)
    for path in _sqlite_files(database):
        path.unlink(missing_ok=True)
    return f"sqlite:///{_sqlite_files(database)[0]}"


def secondary_indexes(target: Target) -> list[IndexInfo]:
    return [ix for ix in target.indexes() if not (ix.primary or ix.unique)]


def drop_secondary_indexes(target: Target) -> list[str]:
    """Drop every secondary index (the "no index" configuration); the names dropped."""
    dropped = []
    for ix in secondary_indexes(target):
        result = target.drop_index(ix.table, ix.name)
        if result.status == "failed":
            raise RuntimeError(f"could not drop {ix.name} on {ix.table}: {result.error}")
        dropped.append(ix.name)
    return dropped


def refresh_index_sizes(target: Target, tables: list[str]) -> None:
    """MariaDB reports index sizes from persistent statistics: bring them up to date first."""
    if target.dialect == "mysql":
        for table in tables:
            target.execute(f"ANALYZE TABLE {target.quote(table)}")
