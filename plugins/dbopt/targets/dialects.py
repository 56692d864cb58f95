"""What differs between the engines, as data: the advisor, the guardrails, the privileges check and
the connection hook read these traits instead of asking which engine they talk to.

A new engine is one target module (``Target`` subclass) plus its entry in ``TRAITS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DialectTraits:
    name: str
    url_scheme: str  # SQLAlchemy's
    conn_types: tuple[str, ...]  # Airflow connection types that name this engine
    file_database: bool  # the database is a file: a connection's host (or schema) is its path
    lower_case_names: bool  # unquoted identifiers fold to lower case
    numbered_params: bool  # normalized statements carry $1 placeholders (else ? and "(...)" lists)
    include_columns: bool  # CREATE INDEX … INCLUDE (covering indexes without widening the key)
    # how the advisor costs a hypothetical index: the planner prices it (HypoPG), the planner only
    # says whether it would use it (SQLite's expert mode), or neither (a heuristic)
    whatif: Literal["priced", "used", "none"]
    index_entry_overhead: int  # bytes per index entry besides the key columns (size estimates)
    schema_qualified_stats: bool  # a schema's table is named "schema.table" (statistics, index inventory)
    alter_table_index_ddl: bool  # online index DDL may be spelled ALTER TABLE … ADD/DROP INDEX
    inlines_views: bool  # the planner reads views and plain CTEs through to their base tables


TRAITS: dict[str, DialectTraits] = {
    "postgres": DialectTraits("postgres", "postgresql", ("postgres", "postgresql"), False, True, True, True,
                              "priced", 16, True, False, True),
    "mysql": DialectTraits("mysql", "mysql", ("mysql", "mariadb"), False, False, False, False, "none", 20, False,
                           True, False),
    "sqlite": DialectTraits("sqlite", "sqlite", ("sqlite",), True, False, False, False, "used", 12, False, False,
                            False),
}  # fmt: skip


def traits(dialect: str) -> DialectTraits:
    try:
        return TRAITS[dialect]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}: dbopt knows {', '.join(TRAITS)}") from None


def for_conn_type(conn_type: str) -> DialectTraits | None:
    """The engine an Airflow connection type names (None: not a database dbopt works on)."""
    return next((t for t in TRAITS.values() if conn_type in t.conn_types), None)
