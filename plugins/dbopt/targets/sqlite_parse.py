"""Reading SQLite's own text: EXPLAIN QUERY PLAN detail strings and CREATE INDEX definitions.

The detail wording changed over versions ("SCAN TABLE t AS a" before 3.36, "SCAN a" since); both
are understood. Names can contain spaces and quotes, so the patterns anchor on the fixed words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from dbopt.targets.base import Explain, Scan
from dbopt.targets.querylog import tokens

_SCAN = re.compile(
    r"^(?P<op>SCAN|SEARCH) (?:TABLE )?(?P<name>.+?)(?: AS (?P<alias>.+?))?"
    r"(?: USING (?P<using>.+?)| (?P<vtab>VIRTUAL TABLE INDEX .*?))?(?: \(~(?P<rows>\d+) rows?\))?$"
)
_INDEX = re.compile(r"^(?P<covering>COVERING )?INDEX (?P<index>.+?)(?: \(.*\))?$")
_DERIVED = re.compile(r"^(?:MATERIALIZE|CO-ROUTINE) (?P<name>.+)$")
_SORT = re.compile(r"^USE TEMP B-TREE FOR .*(ORDER BY|GROUP BY|DISTINCT)$")
_NOT_A_TABLE = re.compile(r"^(?:CONSTANT ROW|SUBQUERY \d+)$")


@dataclass(frozen=True)
class QueryNames:
    """What the names in a query's plan refer to: alias → table, and names of CTEs/subqueries."""

    aliases: dict[str, str]  # lower-cased alias or table name → table name as written
    derived: frozenset[str]  # lower-cased CTE and subquery names (not tables)

    @property
    def tables(self) -> set[str]:
        return set(self.aliases.values())


def query_names(query: str) -> QueryNames | None:
    """Aliases and derived names of a query; None if sqlglot cannot parse it."""
    try:
        tree = sqlglot.parse_one(query, read="sqlite")
    except SqlglotError:
        return None
    derived = {n.alias.lower() for n in tree.find_all(exp.CTE, exp.Subquery) if n.alias}
    aliases = {t.alias_or_name.lower(): t.name for t in tree.find_all(exp.Table) if t.name.lower() not in derived}
    return QueryNames(aliases=aliases, derived=frozenset(derived))


def _scan(m: re.Match[str], table: str) -> Scan:
    rows = float(m["rows"]) if m["rows"] else None
    using = m["using"] or ""
    if m["vtab"]:
        return Scan(table, "other", est_rows=rows)
    if not using:
        return Scan(table, "seq", est_rows=rows)
    if using.startswith(("INTEGER PRIMARY KEY", "PRIMARY KEY")):
        # rowid lookups and WITHOUT ROWID tables' clustered key: the row itself is found by key
        return Scan(table, "rowid", est_rows=rows)
    if using.startswith("AUTOMATIC"):
        # a throwaway index built from a full scan on every execution: the missing-index signal
        return Scan(table, "seq", est_rows=rows)
    ix = _INDEX.match(using)
    if ix is None:
        return Scan(table, "other", est_rows=rows)
    return Scan(table, "index_only" if ix["covering"] else "index", index=ix["index"], est_rows=rows)


def parse_plan(rows: Sequence[tuple], names: QueryNames | None, tables: Iterable[str] = ()) -> Explain:
    """EXPLAIN QUERY PLAN rows (id, parent, notused, detail) in the common shape.

    ``names`` resolves aliases (3.36+ prints only the alias); ``tables`` (the schema's table names)
    gives each scanned table its catalog spelling.
    """
    canonical = {t.lower(): t for t in tables}
    aliases = names.aliases if names else {}
    derived = set(names.derived) if names else set()
    scans: list[Scan] = []
    sort = False
    for row in rows:
        detail = str(row[3])
        if _SORT.match(detail):
            sort = True
        elif d := _DERIVED.match(detail):
            derived.add(d["name"].lower())
        elif m := _SCAN.match(detail):
            name = m["name"]
            if _NOT_A_TABLE.match(name) or (name.lower() in derived and not m["alias"]):
                continue
            table = name if m["alias"] else aliases.get(name.lower(), name)
            scans.append(_scan(m, canonical.get(table.lower(), table)))
    return Explain(scans=tuple(scans), total_cost=None, est_rows=None, sort=sort, raw=[list(r) for r in rows])


@dataclass(frozen=True)
class IndexDefinition:
    """The parts of a CREATE INDEX statement PRAGMA index_xinfo does not give: expressions, predicate."""

    keys: tuple[str, ...]  # each key item as written, without ASC/DESC
    where: str | None = None


def parse_index_definition(sql: str) -> IndexDefinition:
    """Split ``CREATE INDEX … ON t (k1, expr DESC, …) WHERE p`` into its key items and predicate."""
    toks = tokens(sql)
    on = next((i for i, t in enumerate(toks) if t.token_type == TokenType.ON), len(toks))
    start = next((i for i in range(on, len(toks)) if toks[i].token_type == TokenType.L_PAREN), None)
    if start is None:
        raise ValueError(f"not a CREATE INDEX statement: {sql[:200]!r}")
    keys: list[str] = []
    depth, item = 0, start + 1
    for i in range(start, len(toks)):
        kind = toks[i].token_type
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(kind, 0)
        if (depth == 1 and kind == TokenType.COMMA) or depth == 0:
            last = i - 1
            if toks[last].token_type in (TokenType.ASC, TokenType.DESC):
                last -= 1
            keys.append(sql[toks[item].start : toks[last].end + 1])
            item = i + 1
        if depth == 0:
            break
    where = next((t for t in toks[i:] if t.token_type == TokenType.WHERE), None)
    predicate = sql[where.end + 1 :].strip().rstrip(";").strip() if where else None
    return IndexDefinition(keys=tuple(keys), where=predicate or None)


@dataclass(frozen=True)
class IndexKey:
    """One key column of an index: a column name, or an expression as written in the definition."""

    name: str
    expression: bool = False
    descending: bool = False


@dataclass(frozen=True)
class IndexShape:
    """An index as PRAGMA index_xinfo and its definition describe it."""

    keys: tuple[IndexKey, ...]
    aux: tuple[str, ...] = ()  # named auxiliary columns (WITHOUT ROWID tables' primary key)
    where: str | None = None


def index_shape(xinfo: Sequence[tuple], definition: str | None) -> IndexShape:
    """Keys, auxiliary columns and predicate of an index from PRAGMA index_xinfo rows and its SQL.

    Rows are (seqno, cid, name, desc, coll, key); cid -2 is an expression (its text comes from the
    definition), cid -1 the rowid. Auxiliary columns are what the index stores besides its keys: the
    rowid (left out, every index has it) or, in WITHOUT ROWID tables, the primary key columns.
    """
    parsed = parse_index_definition(definition) if definition else IndexDefinition(keys=())
    keys: list[IndexKey] = []
    aux: list[str] = []
    for seqno, cid, name, desc, _coll, key in xinfo:
        if not key:
            if cid >= 0:
                aux.append(name)
        elif cid == -2:
            text = parsed.keys[seqno] if seqno < len(parsed.keys) else "<expression>"
            keys.append(IndexKey(text, True, bool(desc)))
        else:
            keys.append(IndexKey(name if cid >= 0 else "rowid", False, bool(desc)))
    return IndexShape(keys=tuple(keys), aux=tuple(aux), where=parsed.where)


def without_rowid_pk(origin: str, xinfo: Sequence[tuple]) -> bool:
    """True for the primary key of a WITHOUT ROWID table (the table's own b-tree; no rowid column)."""
    return origin == "pk" and all(row[1] != -1 for row in xinfo)
