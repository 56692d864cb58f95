"""What the advisor returns: plain, JSON-able data (``to_dict()``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dbopt.advisor.candidates import Rejection
from dbopt.advisor.writes import WriteCost
from dbopt.targets.base import Data, Dialect, IndexSpec


@dataclass(frozen=True)
class QueryEstimate(Data):
    """One statement an index serves, with its estimated cost without and with the advice."""

    digest: str
    query: str  # shortened text
    weight_ms: float  # calls × mean time in the measured window
    cost_before: float  # with the existing indexes only
    cost_after: float  # with every recommended index in place
    method: str  # "hypopg" | "sqlite-expert" | "heuristic"
    generic: bool = False  # estimated on a generic plan ($n / ? without values, e.g. no pg_qualstats example)


@dataclass(frozen=True)
class Recommendation(Data):
    """An index to create, why, and what it is expected to save."""

    spec: IndexSpec
    ddl: str
    table: str
    columns: tuple[str, ...]
    include: tuple[str, ...]
    queries: tuple[QueryEstimate, ...]
    cost_before: float  # sum over the served statements
    cost_after: float
    benefit_ms: float  # estimated time saved over the measured window
    write_penalty_ms: float
    estimated_size_bytes: int
    method: str
    reason: str
    makes_redundant: tuple[str, ...] = ()  # existing indexes this one covers (see drop_candidates)


@dataclass(frozen=True)
class DropCandidate(Data):
    """An existing index worth dropping (never unique or primary), with the reason."""

    table: str
    index: str
    reason: str
    size_bytes: int | None = None
    definition: str | None = None


@dataclass(frozen=True)
class SkippedStatement(Data):
    """A statement that gets no index, and why.

    ``code``: ``not-analysable`` (parse failure), ``no-table``, ``not-a-query``, ``not-plannable``
    (with the engine's error), ``write`` (weighs against indexes on its table), ``no-candidate``,
    ``refused`` (every candidate refused before costing), ``below-threshold``, ``write-cost``,
    ``budget``, ``table-limit``, ``limit``, ``redundant``, ``not-used``, ``engine-refused``.
    """

    digest: str
    query: str
    reason: str
    code: str = ""


@dataclass(frozen=True)
class Advice(Data):
    dialect: Dialect
    recommendations: tuple[Recommendation, ...] = ()
    drop_candidates: tuple[DropCandidate, ...] = ()
    skipped: tuple[SkippedStatement, ...] = ()
    rejected: tuple[Rejection, ...] = ()  # candidate indexes refused before costing (traps)
    write_costs: tuple[WriteCost, ...] = ()  # per table: the write time new indexes are weighed against
    statements: int = 0  # statements given
    analysed: int = 0  # statements parsed and costed
    timing: dict[str, float] = field(default_factory=dict)  # phase -> ms, plus whatif_calls

    @property
    def specs(self) -> list[IndexSpec]:
        return [r.spec for r in self.recommendations]


def short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
