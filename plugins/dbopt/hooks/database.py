"""Airflow hook that opens a ``dbopt.targets`` Target from an Airflow connection (lazily)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from sqlalchemy.engine import URL

from dbopt.targets import Target, open_target
from dbopt.targets.dialects import for_conn_type


def connection_url(conn: Any) -> URL:
    """SQLAlchemy URL of an Airflow connection; for SQLite the database path is the connection's host."""
    engine = for_conn_type((conn.conn_type or "").lower())
    if engine is None:
        raise ValueError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}; dbopt targets need postgres, mysql or sqlite"
        )
    extra = conn.extra_dejson if conn.extra else {}
    if engine.file_database:
        path = conn.host or conn.schema or ""
        return URL.create(engine.url_scheme, database=path, query={k: str(v) for k, v in extra.items()})
    return URL.create(
        engine.url_scheme, username=conn.login or None, password=conn.password or None, host=conn.host or None,
        port=conn.port or None, database=conn.schema or None,
    )  # fmt: skip


class DbTargetHook(BaseHook):
    """``DbTargetHook("my_db").target`` — the connection stays closed until first used."""

    conn_name_attr = "conn_id"
    hook_name = "dbopt database target"

    def __init__(self, conn_id: str) -> None:
        super().__init__()
        self.conn_id = conn_id

    @cached_property
    def url(self) -> URL:
        return connection_url(self.get_connection(self.conn_id))

    @cached_property
    def target(self) -> Target:
        return open_target(self.url)

    def close(self) -> None:
        if "target" in self.__dict__:
            self.target.close()
            del self.__dict__["target"]


# Registered as connection types by dbopt's provider info (dbopt.provider_info), so that
# `airflow connections add --conn-type sqlite|mysql` and the UI form know them. PostgreSQL's type
# comes from apache-airflow-providers-postgres.
class SqliteTargetHook(DbTargetHook):
    conn_type = "sqlite"
    hook_name = "SQLite (dbopt target)"


class MysqlTargetHook(DbTargetHook):
    conn_type = "mysql"
    hook_name = "MySQL / MariaDB (dbopt target)"
