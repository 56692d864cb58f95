"""The one interface every database target implements, and the plain data it returns.

Everything here is plain data (frozen dataclasses with ``to_dict``) so that the CLI, the Airflow
operators (XCom must be JSON) and the tests share one code path. No Airflow import in this package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

# Every statement dbopt itself sends carries this comment, so workload extraction can leave the
# tool's own queries out (pg_stat_statements keeps leading comments in its normalized text;
# MySQL digests drop comments, so MySQL targets also filter on the catalog schemas they read).
TOOL_MARKER = "/* dbopt */"

Dialect = Literal["postgres", "mysql", "sqlite"]

# A replayed benchmark query is cut off after this long (a runaway replay is not a measurement).
REPLAY_TIMEOUT_S = 60.0
# Written on every index dbopt builds (PostgreSQL COMMENT ON INDEX, MySQL index COMMENT, SQLite a
# comment kept in the CREATE text): dbopt drops or rebuilds only indexes that carry it.
OWNER_MARK = "dbopt-built"


class TargetError(Exception):
    """A target operation failed in a way the caller should report, not retry blindly."""


class Data:
    """Mixin: a dataclass that turns into JSON-able plain data (for XCom, reports, the CLI)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def check_fields(cls, data: Any, where: str, required: tuple[str, ...] = ()) -> None:
        """Refuse data that is not a mapping, names unknown fields or lacks required ones (``where`` says whose)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown := sorted(set(data) - known):
            raise ValueError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        if missing := [k for k in required if k not in data]:
            raise ValueError(f"{where}: missing required field(s) {missing}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # type: ignore[no-untyped-def]
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {k: v for k, v in data.items() if k in names}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            # JSON turns tuples into lists; frozen dataclasses hash only with tuples.
            if f.name in kwargs and isinstance(kwargs[f.name], list) and "tuple" in str(f.type):
                kwargs[f.name] = tuple(kwargs[f.name])
        return cls(**kwargs)


@dataclass(frozen=True)
class WorkloadFilter(Data):
    """Which statements count as the workload worth optimizing."""

    min_mean_ms: float = 0.0
    min_calls: int = 1
    top_n: int = 50
    # Case-insensitive substrings; statements containing any of them are left out.
    exclude: tuple[str, ...] = ()

    def keeps(self, stmt: Statement) -> bool:
        text = stmt.query.lower()
        if TOOL_MARKER in stmt.query or any(x.lower() in text for x in self.exclude):
            return False
        return stmt.calls >= self.min_calls and stmt.mean_ms >= self.min_mean_ms

    def apply(self, statements: Iterable[Statement]) -> list[Statement]:
        """Filter, then keep the top N by total time (what the workload actually costs)."""
        kept = [s for s in statements if self.keeps(s)]
        kept.sort(key=lambda s: (-s.total_ms, s.digest))
        return kept[: self.top_n]


@dataclass(frozen=True)
class Statement(Data):
    """One normalized statement of the workload with its measured statistics."""

    digest: str
    query: str  # normalized text as the engine reports it ($1 / ? placeholders)
    calls: int
    total_ms: float
    mean_ms: float
    stddev_ms: float | None = None
    rows: int | None = None
    shared_blks_hit: int | None = None
    shared_blks_read: int | None = None
    rows_examined: int | None = None
    no_index_used: int | None = None
    # A concrete statement with real literal values, where the source has one: used for replay.
    example: str | None = None
    source: str = ""

    @staticmethod
    def digest_of(text: str) -> str:
        return hashlib.sha1(" ".join(text.split()).lower().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Scan(Data):
    """How one table is read in a plan, reduced to what all three engines can say."""

    table: str
    access: str  # "seq" (full scan) | "index" | "index_only" | "bitmap" | "rowid" | "other"
    index: str | None = None
    est_rows: float | None = None
    est_cost: float | None = None


@dataclass(frozen=True)
class Explain(Data):
    """A plan in the common shape; ``raw`` keeps the engine's own machine-readable form."""

    scans: tuple[Scan, ...]
    total_cost: float | None = None  # PostgreSQL/MySQL estimated cost; SQLite has none
    est_rows: float | None = None
    sort: bool = False  # an explicit sort step (Sort node / filesort / USE TEMP B-TREE)
    raw: Any = None

    def indexes_used(self) -> set[str]:
        return {s.index for s in self.scans if s.index}

    def full_scans(self) -> set[str]:
        return {s.table for s in self.scans if s.access == "seq"}


@dataclass(frozen=True)
class IndexInfo(Data):
    """An existing index, with what the engine knows of its size and use."""

    table: str
    name: str
    columns: tuple[str, ...]
    descending: tuple[bool, ...] = ()
    include: tuple[str, ...] = ()
    unique: bool = False
    primary: bool = False
    valid: bool = True  # PostgreSQL indisvalid; False = leftover of a failed CONCURRENTLY build
    partial: bool = False  # has a WHERE predicate
    expression: bool = False  # on an expression, not plain columns
    size_bytes: int | None = None
    scans: int | None = None  # usage counter since the statistics were last reset
    unused: bool | None = None  # sys.schema_unused_indexes / idx_scan = 0
    redundant_with: str | None = None  # another index that makes this one redundant
    definition: str | None = None
    schema: str | None = None
    owned: bool = False  # carries OWNER_MARK: dbopt built it


@dataclass(frozen=True)
class IndexSpec(Data):
    """An index to create. The name is deterministic so a rerun finds what an earlier run built."""

    table: str
    columns: tuple[str, ...]
    descending: tuple[bool, ...] = ()
    include: tuple[str, ...] = ()
    unique: bool = False
    name: str = ""
    schema: str | None = None

    MAX_NAME: ClassVar[int] = 63  # PostgreSQL's NAMEDATALEN-1; MySQL allows 64

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError(f"index on {self.table!r} needs at least one column")
        if self.descending and len(self.descending) != len(self.columns):
            raise ValueError("descending must have one flag per column")
        if not self.name:
            object.__setattr__(self, "name", self.default_name())

    def is_descending(self, i: int) -> bool:
        return bool(self.descending) and self.descending[i]

    def default_name(self) -> str:
        key = repr((self.table, self.columns, self.descending, self.include, self.unique))
        tag = hashlib.sha1(key.encode()).hexdigest()[:8]
        readable = re.sub(r"[^a-z0-9_]+", "_", "_".join((self.table, *self.columns)).lower()).strip("_")
        return f"dbopt_{readable[: self.MAX_NAME - 15]}_{tag}"


@dataclass(frozen=True)
class DdlResult(Data):
    """What happened when dbopt created or dropped one index."""

    action: Literal["create", "drop"]
    table: str
    index: str
    status: Literal["created", "exists", "dropped", "absent", "failed"]
    statement: str
    attempts: int = 1
    duration_ms: float = 0.0
    error: str | None = None
    invalid_cleaned: bool = False  # an INVALID leftover of a failed build was dropped
    left_behind: str | None = None  # what a failed change left in the database (e.g. an INVALID index)

    @property
    def changed(self) -> bool:
        return self.status in ("created", "dropped")


@dataclass(frozen=True)
class IndexHiding:
    """How a target measures "before" while new indexes exist, without rebuilding anything.

    ``toggle(True)`` shows the indexes to the planner, ``toggle(False)`` hides them (MariaDB IGNORED is
    engine-wide: callers end with ``toggle(True)`` in a ``finally``); ``before_sql`` is the statement
    the "before" arm runs (SQLite pins the old plan in it; unchanged elsewhere).
    """

    mechanism: str
    toggle: Callable[[bool], None]
    before_sql: Callable[[str], str]


@dataclass(frozen=True)
class HealthFigures(Data):
    """Health figures the engine itself knows. None = the engine cannot tell (not zero)."""

    cache_hit_ratio: float | None = None  # 0..1
    connections_used: int | None = None
    connections_max: int | None = None
    replication_lag_s: float | None = None  # None when not a replica and no replicas report lag
    long_transactions: int | None = None  # open longer than the threshold asked for
    longest_transaction_s: float | None = None
    deadlocks: int | None = None  # counter since server/statistics start
    server_version: str | None = None


@dataclass(frozen=True)
class TableStats(Data):
    """Size, write activity and per-column selectivity of one table (for the advisor)."""

    table: str
    rows: int  # the engine's estimate (or exact count for SQLite)
    size_bytes: int | None = None
    writes: int | None = None  # inserts+updates+deletes since statistics reset, where known
    # column -> estimated number of distinct values (None if unknown)
    distinct: dict[str, float | None] = field(default_factory=dict)
    # column -> fraction of rows holding the most common value (0..1), where known
    top_frequency: dict[str, float | None] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    # column -> average stored bytes per value (PostgreSQL pg_stats.avg_width), where known
    widths: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class BackupResult(Data):
    """A pre-change backup: where it is, whether it was verified, and how to undo dbopt's changes."""

    kind: Literal["sqlite_file", "ddl_dump", "cloud_sql"]
    path: str
    verified: bool
    tables: tuple[str, ...] = ()
    size_bytes: int | None = None
    undo_path: str | None = None
    detail: str = ""


def timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


class Target(ABC):
    """A database dbopt can read statistics from, plan on, and build indexes in.

    Implementations keep one connection in autocommit mode (CREATE INDEX CONCURRENTLY needs it)
    and tag every statement they send with ``TOOL_MARKER``.
    """

    dialect: ClassVar[Dialect]
    # where the workload comes from when the plan says ``source: auto``
    workload_source: ClassVar[str]

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def missing_grants(self, tables: list[str] | None) -> list[Any]:
        """The grants this connection's user lacks for dbopt's work (``dbopt.privileges.MissingGrant``)."""

    def data_location(self) -> tuple[Path | None, int | None]:
        """Where the database keeps its files, when that is on this machine and readable (the disk
        guardrail), and the database's size in bytes; None for what cannot be told from here."""
        return None, None

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def quote(self, identifier: str) -> str:
        """Quote an identifier with the dialect's own quoting (never string formatting)."""

    @abstractmethod
    def server_version(self) -> str: ...

    # --- workload ---------------------------------------------------------------------------
    @abstractmethod
    def workload(self, flt: WorkloadFilter | None = None) -> list[Statement]:
        """Statements from the engine's statistics, filtered; empty statistics give []."""

    @abstractmethod
    def reset_workload(self) -> None:
        """Start a fresh measurement window (pg_stat_statements_reset, truncate digests, …)."""

    # --- plans -------------------------------------------------------------------------------
    @abstractmethod
    def explain(self, query: str) -> Explain:
        """Plan of a query (concrete or normalized with placeholders), in the common shape."""

    def whatif(self, query: str, indexes: Sequence[IndexSpec]) -> Explain | None:
        """Plan as if ``indexes`` existed, without building them; None if the engine cannot."""
        return None

    # --- catalog -----------------------------------------------------------------------------
    @abstractmethod
    def indexes(self, tables: Iterable[str] | None = None) -> list[IndexInfo]: ...

    @abstractmethod
    def table_stats(self, tables: Iterable[str]) -> dict[str, TableStats]: ...

    def on_search_path(self, names: Iterable[str]) -> dict[str, str]:
        """Bare name → "schema.name" for each of ``names`` the session's search path finds elsewhere
        than the default schema (PostgreSQL); engines without schemas on a path return {}."""
        return {}

    def view_definitions(self, names: Iterable[str]) -> dict[str, str]:
        """name → the SELECT of each of ``names`` that is a view (the advisor reads views through their tables)."""
        return {}

    # --- changes -----------------------------------------------------------------------------
    @abstractmethod
    def create_index(
        self,
        spec: IndexSpec,
        *,
        lock_timeout_s: float = 5.0,
        statement_timeout_s: float = 3600.0,
        retries: int = 3,
    ) -> DdlResult:
        """Build online; idempotent (an existing valid index of that name → "exists")."""

    @abstractmethod
    def drop_index(self, table: str, name: str, *, lock_timeout_s: float = 5.0, retries: int = 3) -> DdlResult:
        """Drop online; idempotent (a missing index → "absent")."""

    def index_hiding(
        self, indexes: Sequence[tuple[str, str]], *, lock_timeout_s: float = 5.0, retries: int = 3
    ) -> IndexHiding | None:
        """How to measure without ``indexes`` ((table, name) pairs that exist) and without dropping
        them; None if this engine cannot (then before and after are measured in separate phases)."""
        return None

    @abstractmethod
    def index_ddl(self, spec: IndexSpec) -> str:
        """The exact CREATE statement create_index runs (for reports, undo scripts, dry runs)."""

    # --- health and safety -------------------------------------------------------------------
    @abstractmethod
    def health(self, long_transaction_s: float = 60.0) -> HealthFigures: ...

    @abstractmethod
    def backup(self, tables: Iterable[str], dest_dir: Path, undo: Sequence[IndexSpec] = ()) -> BackupResult:
        """Back up before a change (see README: dbopt never modifies data rows)."""

    # --- one run at a time (see dbopt.runlock) -----------------------------------------------
    @abstractmethod
    def identity(self) -> str:
        """The database itself, whatever URL reached it: the key of its run lock and lease."""

    @abstractmethod
    def try_run_lock(self, note: str) -> bool:
        """Take this database's run lock without waiting (held until ``release_run_lock`` or until this
        process disconnects or dies); ``note`` says who holds it, where the engine can show that."""

    @abstractmethod
    def release_run_lock(self) -> None: ...

    @abstractmethod
    def run_lock_holder(self) -> str | None:
        """Who holds the run lock, as far as the engine tells (None: nobody, or it cannot tell)."""

    # --- measurement -------------------------------------------------------------------------
    @abstractmethod
    def replay(self, query: str, *, timeout_s: float = REPLAY_TIMEOUT_S) -> tuple[list[tuple], float]:
        """Run one query read-only: its rows, and the wall time of execute + fetch in milliseconds.

        Read-only by construction, whatever the text says: one statement only (a string holding
        several is refused by the engine), in a read-only transaction that is always rolled back
        (SQLite: a separate read-only connection), cut off after ``timeout_s``. Callers screen the
        text first (``dbopt.replay_safety``) for what a read-only transaction still allows.
        A benchmark replays the application's own statements: targets whose statistics key on the
        statement text (PostgreSQL) run these untagged.
        """

    def timed(self, query: str, *, timeout_s: float = REPLAY_TIMEOUT_S) -> float:
        """``replay``'s wall time in milliseconds (the benchmark's measurement)."""
        return self.replay(query, timeout_s=timeout_s)[1]

    @abstractmethod
    def execute(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run one statement (tagged) and return its rows (empty for DDL/DML)."""
