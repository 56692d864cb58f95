"""Advice as a production database gives it: counters never reset after the bulk load, with and
without pg_qualstats, before and after ``VACUUM ANALYZE`` — the same set every time, and a reason for
every statement that gets no index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from dbopt import pipeline
from dbopt.advisor import Advice, AdvisorPolicy, advise
from dbopt.plan import Plan
from dbopt.targets.base import Target


def index_set(advice: Advice) -> list[str]:
    return sorted(
        f"{r.table}({', '.join(r.columns)})" + (f" INCLUDE ({', '.join(r.include)})" if r.include else "")
        for r in advice.recommendations
    )


def check_stability(target: Target, plan: Plan, policy: AdvisorPolicy, say: Callable[[str], None]) -> dict[str, Any]:
    """Advice with pg_qualstats' examples, then as a database without pg_qualstats gives the workload
    (pg_stat_statements' normalized texts, no examples: generic plans), then after VACUUM ANALYZE."""

    # One extraction for every run: the server's pg_stat_statements is shared with other databases
    # and may evict entries while VACUUM runs; without pg_qualstats the same statements have no example.
    workload = list(pipeline.extract_workload(plan, plan.targets[0], target).statements)

    def run(label: str, examples: bool) -> dict[str, Any]:
        statements = workload if examples else [replace(s, example=None) for s in workload]
        advice = advise(target, statements, policy)
        served = {q.digest for r in advice.recommendations for q in r.queries}
        unexplained = [s.digest for s in statements if s.digest not in served
                       and not any(k.digest == s.digest and k.reason for k in advice.skipped)]  # fmt: skip
        say(f"  {label}: {len(statements)} statements, {len(advice.recommendations)} indexes {index_set(advice)}")
        say(f"    statements without an index: {len(advice.skipped)}, without a reason: {len(unexplained)}")
        for s in advice.skipped:
            say(f"    - [{s.code}] {s.query[:70]}: {s.reason[:160]}")
        return {"set": index_set(advice), "unexplained": unexplained, "advice": advice.to_dict(),
                "generic": sum(q.generic for r in advice.recommendations for q in r.queries)}  # fmt: skip

    say("stability: counters not reset after the bulk load")
    runs = {"with pg_qualstats": run("with pg_qualstats examples", True)}
    runs["only pg_stat_statements + hypopg"] = run("only pg_stat_statements + hypopg (generic plans)", False)
    target.execute("VACUUM ANALYZE")
    runs["after VACUUM ANALYZE"] = run("after VACUUM ANALYZE, no examples", False)
    sets = {tuple(r["set"]) for r in runs.values()}
    return {
        "runs": runs,
        "identical": len(sets) == 1,
        "non_empty": all(r["set"] for r in runs.values()),
        "all_explained": not any(r["unexplained"] for r in runs.values()),
    }
