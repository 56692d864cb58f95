"""Workload statement → per-table usage: which columns a query filters, joins, sorts and reads.

Parsing uses sqlglot in the target's dialect. Each table occurrence (a self-join has two) gets its
own :class:`TableUsage`, because an index serves one access path, not a table in general.
Statements sqlglot cannot parse raise :class:`ParseFailure`; the advisor reports and skips them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.merge_subqueries import merge_subqueries
from sqlglot.optimizer.qualify import qualify

from dbopt.targets.base import Data, Dialect
from dbopt.targets.dialects import traits


class ParseFailure(ValueError):
    """A statement the advisor cannot analyse (the message says why)."""


@dataclass(frozen=True)
class TableUsage(Data):
    """How one table occurrence is used by one statement (column names as the catalog spells them)."""

    table: str
    equality: tuple[str, ...] = ()  # col = x, col IN (…), col IS NULL, col = ANY(…)
    range: tuple[str, ...] = ()  # <, >, BETWEEN, LIKE 'prefix%'
    join: tuple[str, ...] = ()  # equality with a column of another table occurrence
    order_by: tuple[tuple[str, bool], ...] = ()  # (column, descending); only when all on this table
    group_by: tuple[str, ...] = ()
    referenced: tuple[str, ...] = ()  # every column the statement reads from this table
    all_columns: bool = False  # SELECT * / t.*: no index can cover it
    non_sargable: tuple[tuple[str, str], ...] = ()  # (column, why no btree can use the predicate)
    has_limit: bool = False
    limit: int | None = None  # the literal LIMIT, when there is one

    def keyable(self) -> set[str]:
        """Columns an index key can serve for this access."""
        return {*self.equality, *self.range, *self.join, *(c for c, _ in self.order_by), *self.group_by}


@dataclass(frozen=True)
class ParsedStatement(Data):
    """What the advisor knows about one statement after parsing."""

    kind: str  # "select" | "insert" | "update" | "delete" | "other"
    usages: tuple[TableUsage, ...] = ()
    written_table: str | None = None  # INSERT/UPDATE/DELETE target
    set_columns: tuple[str, ...] = ()  # UPDATE … SET columns

    @property
    def tables(self) -> set[str]:
        return {u.table for u in self.usages} | ({self.written_table} if self.written_table else set())


# pg_stat_statements writes "IN ($1,$2)"; sqlglot's tokenizer misreads "$1,$2" as a dollar quote.
_PG_PARAM = re.compile(r"(?<![\w$])\$(\d+)")
# MySQL/MariaDB digests shorten value lists to "(...)".
_MYSQL_ELLIPSIS = re.compile(r"\(\s*\.\.\.\s*\)")
MAX_VIEW_DEPTH = 4  # views over views over views…
# pg_stat_statements keeps the text of an SQL-level PREPARE: "PREPARE q (int, text) AS SELECT …".
_PREPARE = re.compile(r"^\s*PREPARE\s+(?:\w+|\"[^\"]+\")\s*(?:\([^)]*\))?\s+AS\s+", re.IGNORECASE)


_LIMIT_PARAMETER = re.compile(r"\bLIMIT\s+\$\d+\b", re.IGNORECASE)


def bind_limit(text: str, rows_per_call: float | None) -> str:
    """``LIMIT $n`` → the rows a call returned on average (pg_stat_statements ``rows / calls``).

    A generic plan assumes a parameter LIMIT keeps 10% of the rows, which makes a sort key look far
    more valuable than it is for ``LIMIT 20``; the measured rows per call are what the LIMIT was.
    """
    if rows_per_call is None:
        return text
    return _LIMIT_PARAMETER.sub(f"LIMIT {max(1, math.ceil(rows_per_call))}", text)


def unprepared(text: str) -> str:
    """The statement inside ``PREPARE name [(types)] AS …``; other text unchanged."""
    return _PREPARE.sub("", text, count=1)


def has_parameters(tree: exp.Expression) -> bool:
    """The statement has ``$n`` / ``?`` parameters without values: its plan is a generic one."""
    return tree.find(exp.Parameter, exp.Placeholder) is not None


def parse_sql(text: str, dialect: Dialect) -> exp.Expression:
    """One statement's syntax tree; raises ParseFailure with sqlglot's reason."""
    text = _PG_PARAM.sub(r" $\1", text) if traits(dialect).numbered_params else _MYSQL_ELLIPSIS.sub("(?)", text)
    try:
        trees = [t for t in sqlglot.parse(text, read=dialect) if t is not None]
    except sqlglot.errors.SqlglotError as err:
        raise ParseFailure(f"sqlglot could not parse it: {str(err).splitlines()[0]}") from None
    if len(trees) != 1:
        raise ParseFailure(f"expected one statement, found {len(trees)}")
    if isinstance(trees[0], exp.Command):
        raise ParseFailure("not a statement sqlglot understands (parsed as an opaque command)")
    return trees[0]


def table_names(tree: exp.Expression, dialect: Dialect) -> set[str]:
    """Real tables a statement names (CTE names left out); PostgreSQL folds unquoted names to lower case
    and keeps a schema: ``"Bar"."Foo"`` → ``Bar.Foo``, ``app.items`` → ``app.items``."""
    ctes = _cte_names(tree)
    return {_folded(t, dialect) for t in tree.find_all(exp.Table) if t.name and (t.db or t.name.lower() not in ctes)}


def _folded(table: exp.Table, dialect: Dialect) -> str:
    def fold(part: exp.Expression | None, text: str) -> str:
        quoted = isinstance(part, exp.Identifier) and part.quoted
        return text.lower() if traits(dialect).lower_case_names and not quoted else text

    name = fold(table.this, table.name)
    return (
        f"{fold(table.args.get('db'), table.db)}.{name}"
        if table.db and traits(dialect).schema_qualified_stats
        else name
    )


def needs_inlining(tree: exp.Expression, views: Mapping[str, exp.Expression]) -> bool:
    """The statement names a view, or has CTEs PostgreSQL inlines (none ``MATERIALIZED``)."""
    ctes = list(tree.find_all(exp.CTE))
    if ctes and not any(c.args.get("materialized") for c in ctes):
        return True
    return any(_folded(t, "postgres") in views for t in tree.find_all(exp.Table))


def inline(
    tree: exp.Expression, views: Mapping[str, exp.Expression], columns: Mapping[str, Sequence[str]]
) -> exp.Expression:
    """``tree`` with each view (name → its parsed definition) read through its base tables and the views
    and inlinable CTEs merged into the statement where SQL allows (sqlglot's merge_subqueries), so filters
    and sorts land on base columns, as PostgreSQL's planner sees them.

    Raises ParseFailure when the merged statement cannot be built.
    """
    tree = tree.copy()
    for _ in range(MAX_VIEW_DEPTH):  # a view's definition may name views too
        named = [t for t in tree.find_all(exp.Table) if _folded(t, "postgres") in views]
        if not named:
            break
        for t in named:
            alias = exp.TableAlias(this=exp.to_identifier(t.alias_or_name))
            t.replace(exp.Subquery(this=views[_folded(t, "postgres")].copy(), alias=alias))
    # one nesting level for every table: bare names are PostgreSQL's default schema
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for table, cols in columns.items():
        schema_name, _, name = table.rpartition(".")
        schema.setdefault(schema_name or "public", {})[name] = dict.fromkeys(cols, "text")
    if any(c.args.get("materialized") for c in tree.find_all(exp.CTE)):
        return tree  # a MATERIALIZED CTE is an optimisation fence: nothing is merged through it
    try:
        qualified = qualify(tree, schema=schema, dialect="postgres", identify=False, validate_qualify_columns=False)
        return merge_subqueries(qualified)
    except sqlglot.errors.SqlglotError as err:
        raise ParseFailure(f"cannot read it through its view(s): {str(err).splitlines()[0]}") from None


def parse_statement(text: str, dialect: Dialect, columns: Mapping[str, Sequence[str]] | None = None) -> ParsedStatement:
    """Parse and analyse in one go (see :func:`analyse`)."""
    return analyse(parse_sql(text, dialect), columns)


def analyse(
    tree: exp.Expression,
    columns: Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> ParsedStatement:
    """Per-table usage of a parsed statement.

    ``columns`` maps table → its column names; with it, unqualified columns in multi-table queries
    are resolved and names take the catalog's spelling. Without it, only single-table scopes resolve.
    ``aliases`` maps a name statements use to the table key it means (``items`` → ``app.items``).
    """
    return _Analyser(tree, columns or {}, aliases or {}).run()


# --- implementation ------------------------------------------------------------------------------


def _cte_names(tree: exp.Expression) -> set[str]:
    return {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}


def _is_scope(node: exp.Expression) -> bool:
    return isinstance(node, exp.Select | exp.Update | exp.Delete)


def _local_walk(node: exp.Expression) -> Iterator[exp.Expression]:
    """Descendants of ``node`` without entering nested queries (they are scopes of their own)."""
    for child in node.iter_expressions():
        if isinstance(child, exp.Query):
            continue
        yield child
        yield from _local_walk(child)


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _bare_column(node: exp.Expression | None) -> exp.Column | None:
    if node is None:
        return None
    node = _unparen(node)
    return node if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star) else None


def _columns_in(node: exp.Expression) -> list[exp.Column]:
    found = [node] if isinstance(node, exp.Column) else []
    found += [n for n in _local_walk(node) if isinstance(n, exp.Column)]
    return [c for c in found if not isinstance(c.this, exp.Star)]


@dataclass(eq=False)  # identity semantics: two occurrences of one table stay distinct
class _Occurrence:
    """One table occurrence in a FROM/JOIN/UPDATE/DELETE, accumulating its usage."""

    table: str
    equality: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    join: list[str] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    referenced: list[str] = field(default_factory=list)
    non_sargable: list[tuple[str, str]] = field(default_factory=list)
    all_columns: bool = False
    has_limit: bool = False
    limit: int | None = None

    def add(self, kind: str, column: str) -> None:
        bucket: list[str] = getattr(self, kind)
        if column not in bucket:
            bucket.append(column)

    def freeze(self) -> TableUsage:
        return TableUsage(
            table=self.table,
            equality=tuple(self.equality),
            range=tuple(c for c in self.range if c not in self.equality),
            join=tuple(c for c in self.join if c not in self.equality),
            order_by=tuple(self.order_by),
            group_by=tuple(self.group_by),
            referenced=tuple(self.referenced),
            all_columns=self.all_columns,
            non_sargable=tuple(dict.fromkeys(self.non_sargable)),
            has_limit=self.has_limit,
            limit=self.limit,
        )


class _Scope:
    """A SELECT/UPDATE/DELETE and the table occurrences its FROM clause brings into view."""

    def __init__(self, node: exp.Expression, parent: _Scope | None, analyser: _Analyser) -> None:
        self.node = node
        self.parent = parent
        self.by_alias: dict[str, _Occurrence | None] = {}  # None = derived table / CTE
        sources: list[exp.Expression] = []
        if isinstance(node, exp.Update | exp.Delete):
            sources.append(node.this)
        from_ = node.args.get("from_") or node.args.get("from")
        if from_ is not None:
            sources.append(from_.this)
        sources += [j.this for j in node.args.get("joins") or []]
        for src in sources:
            alias = src.alias_or_name.lower()
            if isinstance(src, exp.Table) and src.name and (src.db or src.name.lower() not in analyser.ctes):
                occ = _Occurrence(analyser.occurrence_name(src))
                analyser.occurrences.append(occ)
                self.by_alias[alias] = occ
            else:
                self.by_alias[alias] = None

    @property
    def real(self) -> list[_Occurrence]:
        return [o for o in self.by_alias.values() if o is not None]


class _Analyser:
    def __init__(self, tree: exp.Expression, columns: Mapping[str, Sequence[str]], aliases: Mapping[str, str]) -> None:
        self.tree = tree
        self.ctes = _cte_names(tree)
        # a bare name found on the search path maps to its schema-qualified key
        self.table_by_lower = {t.lower(): t for t in columns} | {a.lower(): t for a, t in aliases.items()}
        self.columns = {t.lower(): {c.lower(): c for c in cols} for t, cols in columns.items()}
        self.occurrences: list[_Occurrence] = []
        self.scopes: dict[int, _Scope] = {}

    def table_name(self, name: str) -> str:
        return self.table_by_lower.get(name.lower(), name)

    def occurrence_name(self, src: exp.Table) -> str:
        """The catalog's key for a table reference: schema-qualified where the catalog has it so."""
        qualified = _folded(src, "postgres") if src.db else ""
        return self.table_by_lower.get(qualified.lower()) or self.table_name(src.name)

    def column_name(self, occ: _Occurrence, ident: exp.Column) -> str | None:
        known = self.columns.get(occ.table.lower())
        if known is None:
            quoted = isinstance(ident.this, exp.Identifier) and ident.this.quoted
            return ident.name if quoted else ident.name.lower()
        return known.get(ident.name.lower())

    # -- scopes --------------------------------------------------------------------------------
    def scope_of(self, node: exp.Expression) -> _Scope:
        parent_node = node.parent
        while parent_node is not None and not _is_scope(parent_node):
            parent_node = parent_node.parent
        parent = self.scope_of(parent_node) if parent_node is not None else None
        if id(node) not in self.scopes:
            self.scopes[id(node)] = _Scope(node, parent, self)
        return self.scopes[id(node)]

    def resolve(self, scope: _Scope, col: exp.Column) -> tuple[_Occurrence, str] | None:
        """The table occurrence and catalog column name a column reference means, if certain."""
        if col.table:
            s: _Scope | None = scope
            while s is not None:
                if col.table.lower() in s.by_alias:
                    occ = s.by_alias[col.table.lower()]
                    if occ is None:
                        return None
                    name = self.column_name(occ, col)
                    return (occ, name) if name else None
                s = s.parent
            return None
        s = scope
        while s is not None:
            hits = [(o, n) for o in s.real if (n := self._has_column(o, col, len(s.by_alias) == 1))]
            if len(hits) == 1:
                return hits[0]
            if hits or len(s.by_alias) > len(s.real):
                return None  # ambiguous, or possibly a column of a derived table
            s = s.parent
        return None

    def _has_column(self, occ: _Occurrence, col: exp.Column, only_source: bool) -> str | None:
        if occ.table.lower() in self.columns:
            return self.column_name(occ, col)
        return self.column_name(occ, col) if only_source else None

    # -- analysis ------------------------------------------------------------------------------
    def run(self) -> ParsedStatement:
        tree = self.tree
        kind = _kind(tree)
        written = None
        set_columns: tuple[str, ...] = ()
        if isinstance(tree, exp.Insert):
            target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
            written = self.table_name(target.name) if isinstance(target, exp.Table) else None
        scope_nodes = [n for n in tree.walk() if _is_scope(n)]
        for node in scope_nodes:
            self.analyse_scope(self.scope_of(node))
        if isinstance(tree, exp.Update | exp.Delete):
            root = self.scope_of(tree)
            written = root.real[0].table if root.real else None
            if isinstance(tree, exp.Update):
                set_columns = tuple(
                    c.name for e in tree.expressions if (c := _bare_column(e.this if isinstance(e, exp.EQ) else None))
                )
        return ParsedStatement(
            kind=kind,
            usages=tuple(o.freeze() for o in self.occurrences),
            written_table=written,
            set_columns=set_columns,
        )

    def analyse_scope(self, scope: _Scope) -> None:
        node = scope.node
        for col in _columns_in(node):
            if hit := self.resolve(scope, col):
                hit[0].add("referenced", hit[1])
        self.mark_stars(scope)
        conditions: list[exp.Expression] = []
        if (where := node.args.get("where")) is not None:
            conditions.append(where.this)
        for join in node.args.get("joins") or []:
            if (on := join.args.get("on")) is not None:
                conditions.append(on)
            self.using_join(scope, join)
        for cond in conditions:
            for conjunct in _conjuncts(cond):
                self.classify(scope, conjunct)
        if isinstance(node, exp.Select):
            self.sorting(scope)

    def mark_stars(self, scope: _Scope) -> None:
        if not isinstance(scope.node, exp.Select):
            return
        for e in scope.node.expressions:
            if isinstance(e, exp.Star):
                for occ in scope.real:
                    occ.all_columns = True
            elif isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
                occ = scope.by_alias.get(e.table.lower())
                if occ is not None:
                    occ.all_columns = True

    def using_join(self, scope: _Scope, join: exp.Join) -> None:
        for ident in join.args.get("using") or []:
            col = exp.column(ident.name)
            for occ in scope.real:
                if name := self._has_column(occ, col, True):
                    occ.add("join", name)

    def classify(self, scope: _Scope, pred: exp.Expression) -> None:
        pred = _unparen(pred)
        if isinstance(pred, exp.EQ | exp.NullSafeEQ):
            self.equality(scope, pred.this, pred.expression)
            self.equality(scope, pred.expression, pred.this)
        elif isinstance(pred, exp.In):
            self.one_column(scope, pred.this, "equality", "function or expression in IN")
        elif isinstance(pred, exp.Is) and isinstance(pred.expression, exp.Null):
            self.one_column(scope, pred.this, "equality", "function or expression in IS NULL")
        elif isinstance(pred, exp.GT | exp.GTE | exp.LT | exp.LTE):
            for side, other in ((pred.this, pred.expression), (pred.expression, pred.this)):
                if not self.local_columns(scope, other):
                    self.one_column(scope, side, "range", "function or expression compared with <, >")
        elif isinstance(pred, exp.Between):
            if not any(self.local_columns(scope, b) for b in (pred.args.get("low"), pred.args.get("high")) if b):
                self.one_column(scope, pred.this, "range", "function or expression in BETWEEN")
        elif isinstance(pred, exp.Like):
            self.like(scope, pred)
        elif isinstance(pred, exp.ILike):
            self.one_column(scope, pred.this, None, "ILIKE (no btree operator)")
        elif isinstance(pred, exp.Or):
            self.same_column_or(scope, pred)

    def local_columns(self, scope: _Scope, node: exp.Expression) -> list[tuple[_Occurrence, str]]:
        """Columns of ``node`` that belong to this scope's own tables (outer ones act as constants)."""
        own = {id(o) for o in scope.real}
        return [hit for c in _columns_in(node) if (hit := self.resolve(scope, c)) and id(hit[0]) in own]

    def equality(self, scope: _Scope, side: exp.Expression, other: exp.Expression) -> None:
        col = _bare_column(side)
        if col is None:
            if not _bare_column(other):
                for occ, name in self.local_columns(scope, side):
                    occ.non_sargable.append((name, "function or expression on the column"))
            return
        hit = self.resolve(scope, col)
        if hit is None:
            return
        other_col = _bare_column(other)
        other_hit = self.resolve(scope, other_col) if other_col is not None else None
        if other_hit is not None and other_hit[0] is not hit[0]:
            hit[0].add("join", hit[1])
        elif other_col is None and not self.local_columns(scope, other):
            hit[0].add("equality", hit[1])

    def one_column(self, scope: _Scope, side: exp.Expression, kind: str | None, why_not: str) -> None:
        col = _bare_column(side)
        if col is not None and kind is not None:
            if hit := self.resolve(scope, col):
                hit[0].add(kind, hit[1])
            return
        for occ, name in self.local_columns(scope, side):
            occ.non_sargable.append((name, why_not))

    def like(self, scope: _Scope, pred: exp.Like) -> None:
        pattern = _unparen(pred.expression)
        if isinstance(pattern, exp.Literal) and pattern.is_string:
            if pattern.this and pattern.this[0] not in "%_":
                self.one_column(scope, pred.this, "range", "")
            else:
                self.one_column(scope, pred.this, None, f"LIKE {pattern.sql()} (leading wildcard)")
        else:
            # A placeholder pattern may start with '%': no btree plan can rely on it.
            self.one_column(scope, pred.this, None, "LIKE with a parameter pattern")

    def same_column_or(self, scope: _Scope, pred: exp.Or) -> None:
        """``a = 1 OR a = 2`` is an IN list; any other OR gives no index key."""
        names = set()
        for part in pred.flatten():
            part = _unparen(part)
            if not isinstance(part, exp.EQ | exp.In):
                return
            col = _bare_column(part.this)
            if col is None or (isinstance(part, exp.EQ) and self.local_columns(scope, part.expression)):
                return
            names.add(self.resolve(scope, col))
        if len(names) == 1 and (hit := names.pop()) is not None:
            hit[0].add("equality", hit[1])

    def sorting(self, scope: _Scope) -> None:
        node = scope.node
        if (limit := node.args.get("limit")) is not None:
            value = limit.expression
            for occ in scope.real:
                occ.has_limit = True
                occ.limit = int(value.this) if isinstance(value, exp.Literal) and value.this.isdigit() else None
        if (order := node.args.get("order")) is not None:
            keys = [
                (self.resolve_local(scope, _sort_target(node, o.this)), bool(o.args.get("desc")))
                for o in order.expressions
            ]
            if keys and all(k for k, _ in keys) and len({id(k[0]) for k, _ in keys if k}) == 1:
                occ = keys[0][0][0]  # type: ignore[index]
                occ.order_by = [(k[1], desc) for k, desc in keys if k]
        if (group := node.args.get("group")) is not None:
            cols = [self.resolve_local(scope, g) for g in group.expressions]
            if cols and all(cols) and len({id(c[0]) for c in cols if c}) == 1:
                cols[0][0].group_by = [c[1] for c in cols if c]  # type: ignore[index]

    def resolve_local(self, scope: _Scope, node: exp.Expression) -> tuple[_Occurrence, str] | None:
        col = _bare_column(node)
        hit = self.resolve(scope, col) if col is not None else None
        return hit if hit is not None and any(hit[0] is o for o in scope.real) else None


def _sort_target(select: exp.Expression, key: exp.Expression) -> exp.Expression:
    """What an ORDER BY key sorts on: ``ORDER BY 2`` and ``ORDER BY alias`` mean a select-list expression."""
    items = select.expressions
    if isinstance(key, exp.Literal) and not key.is_string and key.this.isdigit() and 0 < int(key.this) <= len(items):
        return items[int(key.this) - 1].unalias()
    if isinstance(key, exp.Column) and not key.table:
        named = [e for e in items if isinstance(e, exp.Alias) and e.alias.lower() == key.name.lower()]
        if len(named) == 1:
            return named[0].unalias()
    return key


def _kind(tree: exp.Expression) -> str:
    for cls, name in ((exp.Insert, "insert"), (exp.Update, "update"), (exp.Delete, "delete"), (exp.Query, "select")):
        if isinstance(tree, cls):
            return name
    return "other"


def _conjuncts(cond: exp.Expression) -> list[exp.Expression]:
    cond = _unparen(cond)
    if isinstance(cond, exp.And):
        return [p for part in cond.flatten() for p in _conjuncts(part)]
    return [cond]
