"""Before and after measured together, by hiding the new indexes instead of dropping them.

Where the engine can hide an index without rebuilding it (``Target.index_hiding``), both arms run
in ABBA-interleaved rounds inside one session, so whatever drifts between two phases minutes apart
(page cache, buffer pool, a neighbour's load) hits both arms alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from dbopt.bench.runner import BenchQuery, BenchResult, interleave
from dbopt.targets.base import IndexHiding, Target, TargetError


class CannotHide(TargetError):
    """A measured statement cannot run "as before" while the new indexes exist."""


def measure_hidden(
    target: Target, queries: Sequence[BenchQuery], hiding: IndexHiding, total: int, warmup: int
) -> tuple[BenchResult, BenchResult]:
    """(before, after) with about ``total`` samples per query and arm; the indexes are shown again at
    the end whatever happens (an engine-wide IGNORED must never outlive the benchmark)."""
    try:
        before_queries = [BenchQuery(q.name, tuple(hiding.before_sql(v) for v in q.variants)) for q in queries]
    except TargetError as err:
        raise CannotHide(f"cannot measure before and after interleaved: {err}") from err
    rounds = max(2, min(10, total // 3))
    try:
        return interleave(
            target,
            queries,
            hiding.toggle,
            rounds=rounds,
            iterations=-(-total // rounds),
            warmup=warmup,
            before_queries=before_queries,
        )
    finally:
        hiding.toggle(True)
