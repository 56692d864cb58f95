"""The index advisor: workload statements → recommended indexes, drop candidates, skipped statements.

    advice = advise(target, statements, AdvisorPolicy(storage_budget_bytes=512 << 20))
    for rec in advice.recommendations:
        print(rec.ddl, rec.reason)

Pipeline: ``catalog`` (statistics, views, existing indexes, search path) → ``parse`` (sqlglot,
per-table usage; views and CTEs read through) → ``candidates`` (equality → range → sort; traps and
key-led keys refused) → ``cost`` (HypoPG, generic plans for parameters / SQLite what-if plan /
heuristic) → ``shortlist`` (each statement's cheapest and most-per-byte candidates per table, costed
alone) → ``select`` (greedy benefit per byte under a budget, marginal re-costing, picks replaced by
wider ones, sort and covering columns only when their bytes pay, picks merged across statements, a write
penalty from the window's write statements, ``writes``) → ``reasons`` (why each other statement got
no index). Plain data in and out; no Airflow.
"""

from dbopt.advisor.advise import advise
from dbopt.advisor.candidates import Rejection
from dbopt.advisor.explicit import PlanIndexError, spec_from_plan
from dbopt.advisor.model import Advice, DropCandidate, QueryEstimate, Recommendation, SkippedStatement
from dbopt.advisor.parse import ParsedStatement, ParseFailure, TableUsage, parse_statement
from dbopt.advisor.policy import AdvisorPolicy

__all__ = [
    "Advice",
    "AdvisorPolicy",
    "DropCandidate",
    "ParseFailure",
    "ParsedStatement",
    "PlanIndexError",
    "QueryEstimate",
    "Recommendation",
    "Rejection",
    "SkippedStatement",
    "TableUsage",
    "advise",
    "parse_statement",
    "spec_from_plan",
]
