"""Measurement core: time real queries, summarize the samples, judge a change (keep / revert)."""

from __future__ import annotations

from dbopt.bench.plan_targets import PlanTargetReport, TargetCheck, check_plan_targets
from dbopt.bench.runner import (
    MAX_KEPT_SAMPLES,
    BenchQuery,
    BenchResult,
    Comparison,
    QueryComparison,
    QueryResult,
    ab_interleaved,
    compare,
    interleave_targets,
    measure,
)
from dbopt.bench.stats import SampleComparison, Summary, compare_samples, percentile, summarize

__all__ = [
    "MAX_KEPT_SAMPLES",
    "BenchQuery",
    "BenchResult",
    "Comparison",
    "PlanTargetReport",
    "QueryComparison",
    "QueryResult",
    "SampleComparison",
    "Summary",
    "TargetCheck",
    "ab_interleaved",
    "check_plan_targets",
    "compare",
    "compare_samples",
    "interleave_targets",
    "measure",
    "percentile",
    "summarize",
]
