"""What the advisor reads from the catalog for one workload: table statistics, views, existing indexes.

Views are read through their base tables (PostgreSQL plans them that way too): a statement on a
view gets candidates on the tables under it. Table keys are the names statements use, schema-
qualified where the statement qualifies them (``app.items``, ``Bar.Foo``); existing indexes take
the same keys so they are matched with the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sqlglot import exp

from dbopt.advisor.parse import MAX_VIEW_DEPTH, ParseFailure, parse_sql, table_names
from dbopt.targets.base import IndexInfo, TableStats, Target, TargetError


@dataclass
class Catalog:
    stats: dict[str, TableStats]
    missing: set[str]  # names that are neither tables nor views
    views: dict[str, exp.Expression] = field(default_factory=dict)  # view name → parsed definition
    existing: list[IndexInfo] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # bare name → schema-qualified key (search path)

    @property
    def columns(self) -> dict[str, tuple[str, ...]]:
        return {t: s.columns for t, s in self.stats.items()}


def read_catalog(target: Target, tables: set[str]) -> Catalog:
    stats, missing = table_stats(target, tables)
    aliases = target.on_search_path(sorted(missing)) if missing else {}
    if aliases:
        found, _ = table_stats(target, set(aliases.values()))
        aliases = {name: key for name, key in aliases.items() if key in found}
        stats.update(found)
        missing -= set(aliases)
    views: dict[str, exp.Expression] = {}
    for _ in range(MAX_VIEW_DEPTH):
        found = _view_trees(target, missing - set(views))
        if not found:
            break
        views.update(found)
        under = {t for tree in found.values() for t in table_names(tree, target.dialect)} - set(stats) - set(views)
        more, gone = table_stats(target, under)
        stats.update(more)
        missing |= gone
    missing -= set(views)
    existing = _keyed(target.indexes(list(stats)), stats) if stats else []
    return Catalog(stats, missing, views, existing, aliases)


def table_stats(target: Target, tables: Iterable[str]) -> tuple[dict[str, TableStats], set[str]]:
    """Statistics of the tables that exist, and the names that do not."""
    tables = sorted(tables)
    try:
        return target.table_stats(tables), set()
    except TargetError:
        stats, missing = {}, set()
        for table in tables:
            try:
                stats.update(target.table_stats([table]))
            except TargetError:
                missing.add(table)
        return stats, missing


def _view_trees(target: Target, names: set[str]) -> dict[str, exp.Expression]:
    out = {}
    for name, text in target.view_definitions(sorted(names)).items():
        try:
            out[name] = parse_sql(text.strip().rstrip(";"), target.dialect)
        except ParseFailure:
            continue  # left missing: its statements are reported as such
    return out


def _keyed(existing: list[IndexInfo], stats: dict[str, TableStats]) -> list[IndexInfo]:
    """Existing indexes under the advisor's table keys (schema-qualified where the key is)."""
    return [
        replace(ix, table=f"{ix.schema}.{ix.table}") if ix.schema and f"{ix.schema}.{ix.table}" in stats else ix
        for ix in existing
    ]
