"""Run benchmark queries against a target and decide whether a change earned its place.

Three designs:
  * ``measure`` before the change, ``measure`` after it, then ``compare``: works everywhere. Drift
    between the two phases can pass for an effect, so each verdict must also exceed the A/A drift
    (``drifts``: each arm's first half of samples against its second half, and how far the queries
    the change does not serve moved between the phases). Interleaved arms need only the before arm's.
  * ``interleave`` / ``ab_interleaved``: for engines that hide an index without rebuilding it
    (MariaDB IGNORED, MySQL INVISIBLE, SQLite ``INDEXED BY``/``NOT INDEXED`` in the measured
    statement). Both arms run in ABBA order inside one session, so drift (cache warm-up, a
    neighbour's load) hits both arms alike instead of looking like an effect.
    ``interleave_targets``: the same ABBA order between two databases (a primary and its replica).
  * ``compare(..., aa=True)``: both arms measured the same configuration (a dry run builds nothing).
    Any difference found is drift, never an effect: the verdicts say "drift", the decision "revert".

Warm-up runs until the timings are stable (``warm_up``: the last ``WARMUP_WINDOW`` runs' median
within ``WARMUP_TOLERANCE`` of the window before), at least ``warmup`` and at most ``warmup_cap``
runs per query (``warmup=0``: none); each ``BenchResult`` says how every query's warm-up ended.

Within every round the runs of all queries are shuffled (seeded) for the same reason: a slow
phase of the machine spreads over all queries instead of landing on whichever ran last.

Sample retention: summaries are computed from every sample; each ``QueryResult`` keeps at most
``MAX_KEPT_SAMPLES`` raw samples (evenly spaced over the run, in run order) for histograms,
and ``compare`` judges on those kept samples.
"""

from __future__ import annotations

import dataclasses
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
    WarmUp,
    compare_samples,
    halves_drift,
    is_stable,
    method_description,
    ratio_distance,
    summarize,
)
from dbopt.targets import open_target
from dbopt.targets.base import Data, Target, TargetError

MAX_KEPT_SAMPLES = 2000
WARMUP_WINDOW = 5
WARMUP_TOLERANCE = 0.10
WARMUP_CAP = 60
NEAR_LATENCY = 3.0  # controls this close in median latency estimate a query's between-phase shift
DRIFT_RULE = (
    "the effect must clear the A/A drift by min_effect (the drift: the before arm's first half of samples against "
    "its second; between separate phases also the after arm's, the median change of the queries the change does "
    f"not serve, and the median shift in ms of those within ×{NEAR_LATENCY:g} of the query's latency)"
)
Design = Literal["before_after", "ab_interleaved", "aa"]


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
    warmup_state: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # query → WarmUp

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

    design: Design
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


def _warmup_text(warmup: int, cap: int) -> str:
    return (
        f"warm-up per query until the median of the last {WARMUP_WINDOW} runs is within {WARMUP_TOLERANCE:.0%} "
        f"of the {WARMUP_WINDOW} before (at least {warmup}, at most {cap} runs; discarded)"
    )


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
        self.warmup_state: dict[str, dict[str, Any]] = {}
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

    def warm_up(self, at_least: int, cap: int) -> None:
        """Discarded runs per query until its timings are stable (or ``cap`` runs); none at all when
        ``at_least`` is 0 (a deliberately cold measurement)."""
        for q in self.queries:
            runs: list[float] = []
            while at_least and len(runs) < cap:
                if len(runs) >= at_least:
                    if is_stable(runs, WARMUP_WINDOW, WARMUP_TOLERANCE):
                        break
                    self.total += 1  # a warm-up run beyond the least: the progress total grows with it
                runs.append(self._run(q))
            stable = is_stable(runs, WARMUP_WINDOW, WARMUP_TOLERANCE)
            median = float(np.median(runs[-WARMUP_WINDOW:])) if runs else None
            self.warmup_state[q.name] = WarmUp(runs=len(runs), stable=stable, last_median_ms=median).to_dict()

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
            warmup_state=self.warmup_state,
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
    warmup_cap: int = WARMUP_CAP,
    progress: Callable[[int, int], None] | None = None,
) -> BenchResult:
    """Time every query ``iterations × rounds`` times after its warm-up (see ``_Arm.warm_up``).

    ``target`` is a connected Target, or a database URL (opened with ``open_target`` and closed).
    Each round runs all queries' iterations in an order shuffled with ``random.Random(seed)``.
    ``progress(done, total)`` is called after every run, warm-up included.
    """
    _check_plan(queries, iterations, warmup, rounds)
    rng = random.Random(seed)
    started = _now()
    with _opened(target) as tgt:
        # the warm-up may stop before ``warmup_cap``: the total counts its least, as the bar's estimate
        arm = _Arm(tgt, queries, progress, total=len(queries) * (warmup + iterations * rounds))
        arm.warm_up(warmup, max(warmup, warmup_cap))
        for _ in range(rounds):
            arm.round(iterations, rng)
        method = (
            f"{_warmup_text(warmup, max(warmup, warmup_cap))}; {rounds} rounds × {iterations} runs per query, "
            f"order shuffled per round (seed {seed}); wall time of execute + fetch of all rows; "
            "variants run in turn"
        )
        return arm.result(method, started, iterations, warmup, rounds, seed)


def drifts(before: BenchResult, after: BenchResult, controls: Iterable[str] | None = None) -> dict[str, float]:
    """Per query, the A/A drift its effect must exceed, in the statistic the effect is judged by (the
    distance of a median ratio from 1): how far the before configuration moves on its own while
    measured (its first half of samples against its second half, in run order). ``controls`` (None:
    the arms were interleaved) — the arms were separate phases, and what moves one phase against the
    other moves the after arm too: its own halves count, and how far the other controls (queries the
    change cannot affect) moved between the phases: as a ratio (the median of theirs) and as a shift
    in milliseconds (the median shift of the controls within ×``NEAR_LATENCY`` of this query's median,
    relative to it). A busier machine adds tens of microseconds to every sub-millisecond lookup
    (wake-ups, not work): ×1.6 on a 0.1 ms lookup while the 2 ms scans move 3%, which the ratio of
    all controls does not show (measured: bench/README.md, issue 13)."""
    within = {q.name: halves_drift(q.samples) for q in before.queries}
    if controls is None:
        return within
    within = {n: max(d, halves_drift(after.query(n).samples)) for n, d in within.items()}
    medians = {n: (before.query(n).summary.median_ms, after.query(n).summary.median_ms) for n in within}
    ratio = {c: ratio_distance(medians[c][1] / medians[c][0]) for c in controls}
    shift = {c: medians[c][1] - medians[c][0] for c in controls}

    def between(name: str) -> float:
        others = [c for c in ratio if c != name]
        if not others:
            return 0.0
        base = medians[name][0]
        near = [c for c in others if 1 / NEAR_LATENCY <= medians[c][0] / base <= NEAR_LATENCY] or others
        shifted = base + float(np.median([shift[c] for c in near]))
        # a shift as large as the query itself: no effect on it can be told from drift (×1000 says so)
        return max(float(np.median([ratio[c] for c in others])), ratio_distance(max(shifted, base / 1000) / base))

    return {name: max(d, between(name)) for name, d in within.items()}


def _as_drift(result: SampleComparison) -> SampleComparison:
    """An A/A "effect" is drift: the same configuration was measured twice."""
    if result.verdict not in ("improved", "regressed"):
        return result
    why = f"A/A (same configuration twice): a {result.verdict} verdict here is drift, not an effect; {result.reason}"
    return dataclasses.replace(result, verdict="drift", reason=why)


def _judge(
    before: BenchResult,
    after: BenchResult,
    min_effect: float,
    alpha: float,
    served: Iterable[str] | None,
    design: Design,
    controls: Iterable[str] | None = None,
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
    drift = drifts(before, after, controls)

    def judged(name: str) -> SampleComparison:
        result = compare_samples(
            before.query(name).samples,
            after.query(name).samples,
            min_effect=min_effect,
            alpha=alpha,
            drift=drift.get(name, 0.0),
        )
        return _as_drift(result) if design == "aa" else result

    compared = tuple(QueryComparison(name=n, served=n in served_names, result=judged(n)) for n in before.names())
    regressed = [q.name for q in compared if q.verdict == "regressed"]
    improved = [q.name for q in compared if q.served and q.verdict == "improved"]
    verdict: Literal["keep", "revert"]
    if design == "aa":
        drifted = [q.name for q in compared if q.verdict == "drift"]
        verdict = "revert"
        reason = f"A/A: both arms measured the same configuration, nothing to keep (drift on: {drifted or 'none'})"
    elif regressed:
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
        method=f"{method_description(DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED)}; {DRIFT_RULE}",
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
    *,
    aa: bool = False,
    design: Design = "before_after",
) -> Comparison:
    """Per-query verdicts and the decision: "keep" if a query in ``served`` (default: all) improved
    by more than ``min_effect`` and its A/A drift (``drifts``), and no query at all regressed, else
    "revert". ``aa``: both arms measured the same configuration — never "keep". ``design`` names how
    the arms were measured: "ab_interleaved" (from ``interleave``) or "before_after" (separate phases,
    so the queries outside ``served`` — all of them in an A/A check — measure the drift between them).
    """
    names = set(before.names())
    controls = (names if aa else names - set(served or names)) if design == "before_after" else None
    return _judge(before, after, min_effect, alpha, served, "aa" if aa else design, controls)


def interleave(
    target: Target,
    queries: Sequence[BenchQuery],
    toggle: Callable[[bool], None],
    rounds: int = 10,
    iterations: int = 5,
    warmup: int = 2,
    seed: int = 0,
    before_queries: Sequence[BenchQuery] | None = None,
    warmup_cap: int = WARMUP_CAP,
) -> tuple[BenchResult, BenchResult]:
    """Both arms of an A/B test of a change that ``toggle(True)`` applies and ``toggle(False)`` takes
    back instantly → (before, after).

    Arms run in ABBA order (A B, B A, A B, …; A = off = "before"), each block ``iterations`` runs
    per query, shuffled. Each arm is warmed up first. ``before_queries`` (same names): what the A arm
    runs instead, when the engine hides an index in the statement (SQLite ``NOT INDEXED``). The change
    is always left off at the end (also on error): apply it for good if the verdict is "keep".
    """
    _check_plan(queries, iterations, warmup, rounds)
    if before_queries is not None and [q.name for q in before_queries] != [q.name for q in queries]:
        raise ValueError("before_queries must be the same queries (same names, same order) as queries")
    arms = {False: _Arm(target, before_queries or queries), True: _Arm(target, queries)}
    return _abba(arms, toggle, rounds, iterations, warmup, seed, warmup_cap)


def interleave_targets(
    before_target: Target,
    after_target: Target,
    queries: Sequence[BenchQuery],
    rounds: int = 10,
    iterations: int = 5,
    warmup: int = 2,
    seed: int = 0,
    warmup_cap: int = WARMUP_CAP,
) -> tuple[BenchResult, BenchResult]:
    """Both arms of an A/B test between two databases (A = ``before_target``), ABBA-interleaved as
    ``interleave``: a machine that gets busier half-way slows both arms alike instead of the second."""
    _check_plan(queries, iterations, warmup, rounds)
    arms = {False: _Arm(before_target, queries), True: _Arm(after_target, queries)}
    return _abba(arms, lambda on: None, rounds, iterations, warmup, seed, warmup_cap)


def _abba(
    arms: dict[bool, _Arm],
    toggle: Callable[[bool], None],
    rounds: int,
    iterations: int,
    warmup: int,
    seed: int,
    warmup_cap: int,
) -> tuple[BenchResult, BenchResult]:
    rng = random.Random(seed)
    cap = max(warmup, warmup_cap)
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
            arm.warm_up(warmup, cap)
        for r in range(rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                switch(on)
                arms[on].round(iterations, rng)
    finally:
        toggle(False)  # unconditionally: after an error the switch state is unknown
    method = (
        f"ABBA-interleaved A/B ({rounds} rounds, arm order A,B then B,A); per arm block {iterations} runs "
        f"per query, order shuffled (seed {seed}); {_warmup_text(warmup, cap)} per arm; "
        "wall time of execute + fetch of all rows; variants run in turn"
    )
    before, after = (arms[on].result(method, started, iterations, warmup, rounds, seed) for on in (False, True))
    return before, after


def ab_interleaved(
    target: Target,
    queries: Sequence[BenchQuery],
    toggle: Callable[[bool], None],
    *,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
    served: Iterable[str] | None = None,
    **measurement: Any,
) -> Comparison:
    """``interleave`` (``measurement``: its rounds, iterations, warmup, seed…) and judge the two arms
    (see ``compare``)."""
    before, after = interleave(target, queries, toggle, **measurement)
    return compare(before, after, min_effect, alpha, served, design="ab_interleaved")
