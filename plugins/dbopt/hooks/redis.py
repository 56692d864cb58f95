"""Airflow hook for the Redis server a plan's ``cache:`` section names (redis-py, no provider needed)."""

from __future__ import annotations

from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook


def redis_url(conn: Any) -> str:
    """``redis://[:password@]host:port/db`` of an Airflow connection; the database number is ``extra.db``."""
    extra = conn.extra_dejson if conn.extra else {}
    db = extra.get("db", conn.schema or 0)
    if not str(db).isdigit():
        raise ValueError(f"connection {conn.conn_id!r}: extra.db must be a Redis database number, got {db!r}")
    auth = f":{quote(conn.password, safe='')}@" if conn.password else ""
    return f"redis://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"


class RedisHook(BaseHook):
    """``RedisHook("redis_default").client`` — connects on first use."""

    conn_name_attr = "conn_id"
    hook_name = "dbopt redis"

    def __init__(self, conn_id: str) -> None:
        super().__init__()
        self.conn_id = conn_id

    @cached_property
    def url(self) -> str:
        return redis_url(self.get_connection(self.conn_id))

    @cached_property
    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=10)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]
