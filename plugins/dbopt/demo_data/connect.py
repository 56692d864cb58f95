"""Plain DB-API connections (autocommit) for a SQLAlchemy-style URL: psycopg, pymysql or sqlite3.

The demo talks to the driver directly rather than through a ``Target``: targets tag every statement
as dbopt's own, and the replayed workload must look like the application's.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pymysql
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, make_url

from dbopt.demo_data.errors import DemoDataError
from dbopt.targets import dialect_of

_PREPARERS = {
    "postgres": postgresql.dialect().identifier_preparer,
    "mysql": mysql.dialect().identifier_preparer,
    "sqlite": sqlite.dialect().identifier_preparer,
}


def quote(dialect: str, identifier: str) -> str:
    """``identifier`` quoted the dialect's way (as the targets' ``quote``), whatever its spelling."""
    return _PREPARERS[dialect].quote_identifier(identifier)


def sqlite_path(url: str | URL) -> Path:
    """The database file a ``sqlite:///path`` URL names."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise DemoDataError(f"SQLite URL {url!s} names no database file: use sqlite:///path/to/file.db")
    return Path(database)


def connect(url: str | URL) -> tuple[str, Any]:
    """(dialect, autocommit connection) for ``url``; a clear error if the server cannot be reached."""
    dialect = dialect_of(url)
    u = make_url(url)
    shown = u.render_as_string(hide_password=True)
    try:
        if dialect == "postgres":
            params = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
            conn: Any = psycopg.connect(
                **{k: v for k, v in params.items() if v is not None},
                **{k: v for k, v in u.query.items() if isinstance(v, str)},
                autocommit=True,
                prepare_threshold=None,  # every replayed statement is planned like a fresh client's
                connect_timeout=10,
            )
        elif dialect == "mysql":
            if not u.database:
                raise DemoDataError(f"MySQL URL {shown} names no database: use mysql://user@host:3306/DBNAME")
            conn = pymysql.connect(
                host=u.host or "localhost",
                port=u.port or 3306,
                user=u.username or "root",
                password=u.password or "",
                database=u.database,
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=10,
            )
        else:
            conn = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
    except (psycopg.Error, pymysql.MySQLError, sqlite3.Error) as err:
        raise DemoDataError(f"cannot connect to {shown}: {err}".strip()) from err
    return dialect, conn


def execute(conn: Any, statement: str) -> list[tuple]:
    """Run one statement without parameters; its rows (empty for DDL/DML)."""
    cur = conn.cursor()
    try:
        cur.execute(statement)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()
