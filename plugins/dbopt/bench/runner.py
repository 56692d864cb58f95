"""Run benchmark queries against a target and decide whether a change earned its place.

Two designs:
  * ``measure`` before the change, ``measure`` after it, then ``compare``: works everywhere.
  * ``ab_interleaved``: for engines that switch an index on/off instantly (MariaDB IGNORED, MySQL
    INVISIBLE). Both arms run in ABBA order inside one session, so drift (cache warm-up, a
    neighbour's load) hits both arms alike instead of looking like an effect.

Within every round the runs of all queries are shuffled (seeded) for the same reason: a slow
phase of the machine spreads over all queries instead of landing on whichever ran last.

Sample retention: summaries are computed from every sample; each ``QueryResult`` keeps at most
``MAX_KEPT_SAMPLES`` raw samples (evenly spaced over the run, in run order) for histograms,
and ``compare`` judges on those kept samples.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from dbopt.bench.stats import (
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_EFFECT,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    SampleComparison,
    Summary,
    compare_samples,
    method_description,
    summarize,
)
from dbopt.targets import open_target
from dbopt.targets.base import Data, Target, TargetError

MAX_KEPT_SAMPLES = 2000


@dataclass(frozen=True)
class BenchQuery(Data):
    """A query to time: one concrete statement, or concrete variants run in turn.

    Variants let several real parameter values take part, so one lucky (cached, empty) value
    does not stand for the whole query shape.
    """

    name: str
    sql: str | tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.sql, list):
            object.__setattr__(self, "sql", tuple(self.sql))
        if not self.name:
            raise ValueError(f"benchmark query needs a name (sql: {self.sql!r})")
        if not self.variants or any(not isinstance(v, str) or not v.strip() for v in self.variants):
            raise ValueError(f"benchmark query {self.name!r}: sql must be a statement or a non-empty list of them")

    @property
    def variants(self) -> tuple[str, ...]:
        return (self.sql,) if isinstance(self.sql, str) else self.sql


@dataclass(frozen=True)
class QueryResult(Data):
    name: str
    summary: Summary  # over all samples_total samples
    samples: tuple[float, ...]  # at most MAX_KEPT_SAMPLES, in run order
    samples_total: int
    variants: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryResult:
        return super().from_dict({**data, "summary": Summary.from_dict(data["summary"])})


@dataclass(frozen=True)
class BenchResult(Data):
    dialect: str
    method: str
    started_at: str  # ISO 8601, UTC
    finished_at: str
    iterations: int
    warmup: int
    rounds: int
    seed: int
    queries: tuple[QueryResult, ...]

    def query(self, name: str) -> QueryResult:
        for q in self.queries:
            if q.name == name:
                return q
        raise KeyError(f"no benchmark query {name!r}; measured: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [q.name for q in self.queries]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        return super().from_dict({**data, "queries": tuple(QueryResult.from_dict(q) for q in data["queries"])})


@dataclass(frozen=True)
class QueryComparison(Data):
    name: str
    served: bool  # the change is meant to speed this query up
    result: SampleComparison

    @property
    def verdict(self) -> str:
        return self.result.verdict

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryComparison:
        return super().from_dict({**data, "result": SampleComparison.from_dict(data["result"])})


@dataclass(frozen=True)
class Comparison(Data):
    """The decision on one change, with all the evidence (both arms' raw samples included)."""

    design: Literal["before_after", "ab_interleaved"]
    verdict: Literal["keep", "revert"]
    reason: str
    method: str  # how the per-query verdicts were reached; each arm's BenchResult says how it was measured
    min_effect: float
    alpha: float
    queries: tuple[QueryComparison, ...]
    before: BenchResult
    after: BenchResult

    def query(self, name: str) -> QueryComparison:
        for q in self.queries:
            if q.name == name:
                return q
        raise KeyError(f"no compared query {name!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return super().from_dict(
            {
                **data,
                "queries": tuple(QueryComparison.from_dict(q) for q in data["queries"]),
                "before": BenchResult.from_dict(data["before"]),
                "after": BenchResult.from_dict(data["after"]),
            }
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _kept(samples: list[float]) -> tuple[float, ...]:
    if len(samples) <= MAX_KEPT_SAMPLES:
        return tuple(samples)
    picks = np.linspace(0, len(samples) - 1, MAX_KEPT_SAMPLES).round().astype(int)
    return tuple(samples[i] for i in picks)


def _check_plan(queries: Sequence[BenchQuery], iterations: int, warmup: int, rounds: int) -> None:
    if not queries:
        raise ValueError("no benchmark queries given")
    names = [q.name for q in queries]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"benchmark query names must be unique; repeated: {', '.join(dupes)}")
    if iterations < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"need iterations ≥ 1, rounds ≥ 1, warmup ≥ 0 (got {iterations}, {rounds}, {warmup})")


class _Arm:
    """Runs the queries against a target and collects each query's samples (one arm of a test)."""

    def __init__(
        self,
        target: Target,
        queries: Sequence[BenchQuery],
        progress: Callable[[int, int], None] | None = None,
        total: int = 0,
    ) -> None:
        self.target = target
        self.queries = queries
        self.samples: dict[str, list[float]] = {q.name: [] for q in queries}
        self._runs = dict.fromkeys(self.samples, 0)  # per query, to cycle through its variants
        self.progress, self.total, self.done = progress, total, 0

    def _run(self, q: BenchQuery) -> float:
        k = self._runs[q.name] % len(q.variants)
        self._runs[q.name] += 1
        try:
            elapsed = self.target.timed(q.variants[k])
        except Exception as err:
            raise TargetError(f"benchmark query {q.name!r} (variant {k}) failed: {err}") from err
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)
        return elapsed

    def warm_up(self, times: int) -> None:
        for q in self.queries:
            for _ in range(times):
                self._run(q)

    def round(self, iterations: int, rng: random.Random) -> None:
        slots = [q for q in self.queries for _ in range(iterations)]
        rng.shuffle(slots)
        for q in slots:
            self.samples[q.name].append(self._run(q))

    def result(self, method: str, started_at: str, iterations: int, warmup: int, rounds: int, seed: int) -> BenchResult:
        return BenchResult(
            dialect=self.target.dialect,
            method=method,
            started_at=started_at,
            finished_at=_now(),
            iterations=iterations,
            warmup=warmup,
            rounds=rounds,
            seed=seed,
            queries=tuple(
                QueryResult(
                    name=q.name,
                    summary=summarize(self.samples[q.name]),
                    samples=_kept(self.samples[q.name]),
                    samples_total=len(self.samples[q.name]),
                    variants=len(q.variants),
                )
                for q in self.queries
            ),
        )


@contextmanager
def _opened(target: Target | str) -> Iterator[Target]:
    if isinstance(target, Target):
        yield target
        return
    with open_target(target) as opened:
        yield opened


def measure(
    target: Target | str,
    queries: Sequence[BenchQuery],
    iterations: int = 20,
    warmup: int = 3,
    rounds: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> BenchResult:
    """Time every query ``iterations × rounds`` times after ``warmup`` discarded runs per query.

    ``target`` is a connected Target, or a database URL (opened with ``open_target`` and closed).
    Each round runs all queries' iterations in an order shuffled with ``random.Random(seed)``.
    ``progress(done, total)`` is called after every run, warm-up included.
    """
    _check_plan(queries, iterations, warmup, rounds)
    rng = random.Random(seed)
    started = _now()
    with _opened(target) as tgt:
        arm = _Arm(tgt, queries, progress, total=len(queries) * (warmup + iterations * rounds))
        arm.warm_up(warmup)
        for _ in range(rounds):
            arm.round(iterations, rng)
        method = (
            f"{warmup} warm-up runs per query discarded; {rounds} rounds × {iterations} runs per query, "
            f"order shuffled per round (seed {seed}); wall time of execute + fetch of all rows; "
            "variants run in turn"
        )
        return arm.result(method, started, iterations, warmup, rounds, seed)


def _judge(
    before: BenchResult,
    after: BenchResult,
    min_effect: float,
    alpha: float,
    served: Iterable[str] | None,
    design: Literal["before_after", "ab_interleaved"],
) -> Comparison:
    if before.dialect != after.dialect:
        raise ValueError(f"cannot compare a {before.dialect} benchmark with a {after.dialect} one")
    only_before, only_after = set(before.names()) - set(after.names()), set(after.names()) - set(before.names())
    if only_before or only_after:
        raise ValueError(
            f"before and after measured different queries (only before: {sorted(only_before)}, only after: "
            f"{sorted(only_after)}); measure the same BenchQuery list twice"
        )
    served_names = set(before.names()) if served is None else set(served)
    if unknown := sorted(served_names - set(before.names())):
        raise ValueError(f"served names queries that were not measured: {', '.join(unknown)}")

    compared = tuple(
        QueryComparison(
            name=name,
            served=name in served_names,
            result=compare_samples(
                before.query(name).samples, after.query(name).samples, min_effect=min_effect, alpha=alpha
            ),
        )
        for name in before.names()
    )
    regressed = [q.name for q in compared if q.verdict == "regressed"]
    improved = [q.name for q in compared if q.served and q.verdict == "improved"]
    verdict: Literal["keep", "revert"]
    if regressed:
        verdict, reason = "revert", f"regressed: {', '.join(regressed)}"
    elif not improved:
        others = ", ".join(f"{q.name}={q.verdict}" for q in compared if q.served)
        verdict, reason = "revert", f"no query served by the change improved ({others})"
    else:
        verdict, reason = "keep", f"improved: {', '.join(improved)}; none regressed"
    return Comparison(
        design=design,
        verdict=verdict,
        reason=reason,
        method=method_description(DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED),
        min_effect=min_effect,
        alpha=alpha,
        queries=compared,
        before=before,
        after=after,
    )


def compare(
    before: BenchResult,
    after: BenchResult,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
    served: Iterable[str] | None = None,
) -> Comparison:
    """Per-query verdicts and the decision: "keep" if a query in ``served`` (default: all) improved
    and no query at all regressed, else "revert"."""
    return _judge(before, after, min_effect, alpha, served, "before_after")


def ab_interleaved(
    target: Target,
    queries: Sequence[BenchQuery],
    toggle: Callable[[bool], None],
    rounds: int = 10,
    iterations: int = 5,
    warmup: int = 2,
    seed: int = 0,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
    served: Iterable[str] | None = None,
) -> Comparison:
    """A/B test of a change that ``toggle(True)`` applies and ``toggle(False)`` takes back instantly.

    Arms run in ABBA order (A B, B A, A B, …; A = off = "before"), each block ``iterations`` runs
    per query, shuffled. Each arm gets ``warmup`` discarded runs per query first. The change is
    always left off at the end (also on error): apply it for good if the verdict is "keep".
    """
    _check_plan(queries, iterations, warmup, rounds)
    rng = random.Random(seed)
    arms = {False: _Arm(target, queries), True: _Arm(target, queries)}
    state: bool | None = None

    def switch(on: bool) -> None:
        nonlocal state
        if state is not on:  # the ABBA seams (B|B, A|A) need no toggle
            toggle(on)
            state = on

    started = _now()
    try:
        for on, arm in arms.items():
            switch(on)
            arm.warm_up(warmup)
        for r in range(rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                switch(on)
                arms[on].round(iterations, rng)
    finally:
        toggle(False)  # unconditionally: after an error the switch state is unknown
    method = (
        f"ABBA-interleaved A/B ({rounds} rounds, arm order A,B then B,A); per arm block {iterations} runs "
        f"per query, order shuffled (seed {seed}); {warmup} warm-up runs per query per arm discarded; "
        "wall time of execute + fetch of all rows; variants run in turn"
    )
    before, after = (arms[on].result(method, started, iterations, warmup, rounds, seed) for on in (False, True))
    return _judge(before, after, min_effect, alpha, served, "ab_interleaved")
