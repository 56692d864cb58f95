"""Time the demo workload under several index configurations, interleaved round by round.

Method (see bench/README.md):
* every read query of the demo workload runs with ``variants`` concrete value sets
  (``concrete_queries``, the same seed in every configuration), each variant once per round, in an
  order shuffled per round (``dbopt.bench.measure``), after one discarded warm-up pass;
* configurations take turns: each round drops every secondary index, builds one configuration,
  measures it, then the next. On a shared machine the load of the neighbours drifts; interleaving
  spreads that drift over all configurations instead of letting it land on whichever was measured
  last. The orders follow a Williams design (``balanced_orders``): over a full cycle every
  configuration follows every other one equally often, so a carry-over (the cold buffer pool that
  ``none``'s full scans leave behind) does not land on one configuration — a plain rotation of
  ``none, dbopt, hand`` put ``dbopt`` after ``none`` in two rounds of three and cost it ×1.39;
* a round's workload total is ``Σ share_q × mean latency of q's variants in that round``, where
  ``share_q`` is q's weight in workload.yaml scaled to 100 statements: the time 100 statements of
  the demo mix take. The reported total is the median over rounds;
* insert latency: INSERTs of the workload's own insert statements into each written table, one at
  a time (autocommit), spread over the rounds; median per insert.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from dbopt.bench import BenchQuery, BenchResult, QueryResult, measure, summarize
from dbopt.demo_data import concrete_queries, load_workload
from dbopt.targets.base import Data, Target

MIX_STATEMENTS = 100  # the weighted total is the time of this many statements of the demo mix


@dataclass(frozen=True)
class ReadSet:
    """The benchmark's read queries (concrete variants) and each one's share of the mix."""

    queries: tuple[BenchQuery, ...]
    share: dict[str, float]  # statements per MIX_STATEMENTS
    variants: int


@dataclass(frozen=True)
class WorkloadTiming(Data):
    """One configuration's measurement over all rounds."""

    config: str
    total_ms: float  # median over rounds of the weighted total (ms per MIX_STATEMENTS statements)
    round_totals_ms: list[float]
    per_query_ms: dict[str, float]  # median latency per query (all its samples)
    insert_ms: dict[str, float] = field(default_factory=dict)  # table -> median ms per INSERT
    result: dict = field(default_factory=dict)  # BenchResult with every sample, for comparisons


def read_set(dialect: str, scale: float, variants: int) -> ReadSet:
    workload = load_workload()
    reads = [q for q in workload.queries(dialect) if not q.is_write]
    texts = concrete_queries(workload, variants, dialect=dialect, scale=scale, include_writes=False)
    total_weight = sum(q.weight for q in reads)
    return ReadSet(
        queries=tuple(BenchQuery(name=q.name, sql=tuple(texts[q.name])) for q in reads),
        share={q.name: MIX_STATEMENTS * q.weight / total_weight for q in reads},
        variants=variants,
    )


def insert_statements(dialect: str, scale: float, n: int) -> dict[str, list[str]]:
    """Per written table, ``n`` concrete INSERTs of the workload (the tables indexes slow down)."""
    workload = load_workload()
    writes = [q for q in workload.queries(dialect) if q.is_write]
    texts = concrete_queries(workload, n, seed=1, dialect=dialect, scale=scale)
    out: dict[str, list[str]] = {}
    for q in writes:
        table = q.text(dialect).split("INSERT INTO", 1)[1].split()[0].strip('"`')
        out.setdefault(table, []).extend(texts[q.name][:n])
    return out


def time_configs(
    target: Target,
    configs: Mapping[str, Callable[[], None]],
    reads: ReadSet,
    rounds: int,
    inserts: Mapping[str, list[str]],
    reset: Callable[[], None],
    after_build: Callable[[str], None] = lambda name: None,
) -> dict[str, WorkloadTiming]:
    """Measure every configuration ``rounds`` times, interleaved; ``configs[name]()`` builds one after
    ``reset()`` removed the previous one; ``after_build(name)`` runs after each build (inventory)."""
    names = list(configs)
    samples = {n: {q.name: [] for q in reads.queries} for n in names}
    insert_samples: dict[str, dict[str, list[float]]] = {n: {t: [] for t in inserts} for n in names}
    totals: dict[str, list[float]] = {n: [] for n in names}
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    orders = balanced_orders(names)
    for r in range(rounds):
        for name in orders[r % len(orders)]:
            reset()
            configs[name]()
            after_build(name)
            result = measure(target, reads.queries, iterations=reads.variants, warmup=reads.variants, rounds=1, seed=r)
            for q in result.queries:
                samples[name][q.name].extend(q.samples)
            totals[name].append(sum(reads.share[q.name] * statistics.fmean(q.samples) for q in result.queries))
            for table, stmts in inserts.items():
                share = stmts[r * len(stmts) // rounds : (r + 1) * len(stmts) // rounds]
                insert_samples[name][table].extend(_timed_write(target, s) for s in share)
    reset()
    return {
        n: WorkloadTiming(
            config=n,
            total_ms=statistics.median(totals[n]),
            round_totals_ms=[round(t, 3) for t in totals[n]],
            per_query_ms={q: statistics.median(s) for q, s in samples[n].items()},
            insert_ms={t: statistics.median(s) for t, s in insert_samples[n].items() if s},
            result=_bench_result(target, samples[n], reads, rounds, started).to_dict(),
        )
        for n in names
    }


def balanced_orders(names: Sequence[str]) -> list[list[str]]:
    """A Williams design: orders of ``names`` in which each one is immediately preceded by each other
    one equally often (n orders for even n; for odd n the n orders and their reverses)."""
    n = len(names)
    first = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    rows = [[names[(i + j) % n] for j in first] for i in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def _timed_write(target: Target, statement: str) -> float:
    """Milliseconds one write takes (``Target.timed`` replays reads only, read-only by construction)."""
    start = time.perf_counter()
    target.execute(statement)
    return (time.perf_counter() - start) * 1000.0


def _bench_result(
    target: Target, samples: Mapping[str, list[float]], reads: ReadSet, rounds: int, started: str
) -> BenchResult:
    """All of one configuration's samples as one BenchResult (what ``dbopt.bench.compare`` judges)."""
    return BenchResult(
        dialect=target.dialect,
        method=(
            f"{rounds} interleaved rounds × {reads.variants} variants per query (each once per round, order "
            "shuffled); one discarded warm-up pass per round; wall time of execute + fetch of all rows"
        ),
        started_at=started,
        finished_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        iterations=reads.variants,
        warmup=reads.variants,
        rounds=rounds,
        seed=0,
        queries=tuple(
            QueryResult(
                name=q.name,
                summary=summarize(samples[q.name]),
                samples=tuple(samples[q.name]),
                samples_total=len(samples[q.name]),
                variants=reads.variants,
            )
            for q in reads.queries
        ),
    )


def weighted_median_total(timing: WorkloadTiming, reads: ReadSet) -> float:
    """Σ share × median latency per query: the workload total from each query's median (robust to spikes)."""
    return sum(reads.share[q] * ms for q, ms in timing.per_query_ms.items())


def total_ratio(
    base: WorkloadTiming, other: WorkloadTiming, reads: ReadSet, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """``other`` / ``base`` of the weighted median totals, with a 95% percentile-bootstrap interval
    (each query's samples resampled within each configuration)."""
    rng = np.random.default_rng(seed)

    def boot(timing: WorkloadTiming) -> np.ndarray:
        total = np.zeros(resamples)
        for q in timing.result["queries"]:
            samples = np.asarray(q["samples"])
            medians = np.median(rng.choice(samples, size=(resamples, samples.size)), axis=1)
            total += reads.share[q["name"]] * medians
        return total

    ratios = boot(other) / boot(base)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return weighted_median_total(other, reads) / weighted_median_total(base, reads), float(low), float(high)
