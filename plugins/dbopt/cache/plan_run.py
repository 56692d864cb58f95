"""A plan's ``cache:`` section carried out: which statements, then ``warm`` (one path for DAGs and tests)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dbopt.cache.stats import deltas, hit_ratio, read_stats
from dbopt.cache.warm import WarmItem, WarmResult, hot_statements, warm
from dbopt.plan import CacheSpec, Plan, TargetSpec
from dbopt.targets.base import Data, Statement, Target

HIT_RATIO_METHOD = "Redis INFO stats: keyspace_hits / (hits + misses) added over the window (server-wide counters)"


def cache_spec(plan: Plan) -> CacheSpec:
    if plan.cache is None:
        raise ValueError(f"plan {plan.id!r} has no cache: section; add one to warm a cache")
    return plan.cache


def cache_target(plan: Plan) -> TargetSpec:
    """The target whose read path runs the statements: ``cache.target`` or the plan's first."""
    name = cache_spec(plan).target or plan.targets[0].name
    return next(t for t in plan.targets if t.name == name)


def cache_items(
    spec: CacheSpec, workload: Sequence[Statement], dialect: str, safe: Iterable[str] = ()
) -> list[WarmItem]:
    """Listed statements first (each variant its own key), then the workload's hottest reads not listed."""
    items = []
    for query in spec.statements:
        variants = [query.sql] if isinstance(query.sql, str) else query.sql
        items += [WarmItem(query.name if len(variants) == 1 else f"{query.name}#{i}", sql) for i, sql in
                  enumerate(variants)]  # fmt: skip
    listed = {" ".join(i.sql.split()) for i in items}
    hot = hot_statements(workload, spec.from_workload, dialect, safe) if spec.from_workload else []
    return items + [i for i in hot if " ".join(i.sql.split()) not in listed]


def warm_plan(
    plan: Plan, target: Target, client: Any, *, top_n: int | None = None, dry_run: bool = False
) -> WarmResult:
    """Warm the plan's cache through ``target`` (the cache target's open Target) into ``client`` (redis-py)."""
    spec = cache_spec(plan)
    workload = target.workload() if spec.from_workload else []
    items = cache_items(spec, workload, target.dialect, plan.benchmark.safe_functions)
    return warm(
        target,
        client,
        items[:top_n] if top_n else items,
        plan=plan.id,
        target_name=cache_target(plan).name,
        key_template=spec.key_template,
        ttl_s=spec.ttl_s,
        batch_size=spec.batch_size,
        max_value_bytes=spec.max_value_bytes,
        safe_functions=plan.benchmark.safe_functions,
        dry_run=dry_run,
    )


@dataclass(frozen=True)
class HitRatio(Data):
    ratio: float | None  # None: no lookups in the window (0/0 is not a ratio)
    hits: int
    misses: int
    window_s: float  # between the two readings, as measured
    method: str = HIT_RATIO_METHOD


def measure_hit_ratio(client: Any, window_s: float, sleep: Callable[[float], None] = time.sleep) -> HitRatio:
    """The hit ratio of the next ``window_s`` seconds: two ``INFO stats`` readings that far apart."""
    before = read_stats(client)
    sleep(window_s)
    after = read_stats(client)
    hits, misses = deltas(before, after)
    return HitRatio(hit_ratio(before, after), hits, misses, round(after.t - before.t, 3))
