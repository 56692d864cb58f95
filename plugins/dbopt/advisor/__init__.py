"""The index advisor: workload statements → recommended indexes, drop candidates, skipped statements.

    advice = advise(target, statements, AdvisorPolicy(storage_budget_bytes=512 << 20))
    for rec in advice.recommendations:
        print(rec.ddl, rec.reason)

Pipeline: ``parse`` (sqlglot, per-table usage) → ``candidates`` (equality → range → sort, traps
refused) → ``cost`` (HypoPG / SQLite what-if plan / heuristic) → ``shortlist`` (each statement's
cheapest and most-per-byte candidates, costed alone) → ``select`` (greedy benefit per byte under a
budget, marginal re-costing, picks replaced by wider ones, write penalty). Plain data in and out;
no Airflow.
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
