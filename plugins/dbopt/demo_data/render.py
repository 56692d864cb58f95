"""Workload statements with concrete values: as literal SQL text, or as ``?`` text plus parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import sql as pg_sql
from pymysql.converters import escape_item

from dbopt.demo_data.workload import PLACEHOLDER
from dbopt.targets.querylog import sql_literal


def literal(value: Any, dialect: str) -> str:
    """``value`` as a literal of the dialect, quoted and escaped by the driver's own rules."""
    if dialect == "postgres":
        return pg_sql.Literal(value).as_string(None)
    if dialect == "mysql":
        return escape_item(value, "utf8mb4")
    return sql_literal(value)


def concrete_sql(text: str, values: Mapping[str, Any], dialect: str) -> str:
    """``text`` with every ``:name`` placeholder replaced by its value as a literal."""
    return PLACEHOLDER.sub(lambda m: literal(values[m.group(1)], dialect), text)


def qmark_sql(text: str, values: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``text`` with ``?`` placeholders and the values in placeholder order (for sqlite3 / the query log)."""
    params: list[Any] = []

    def bind(m: Any) -> str:
        params.append(values[m.group(1)])
        return "?"

    return PLACEHOLDER.sub(bind, text), params
