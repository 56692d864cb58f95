"""The reference advisor: pg_qualstats_index_advisor() with its default thresholds.

pg_qualstats 2.x returns ``{"indexes": [{"ddl": …, "queryids": […]}, …], "unoptimised": […]}``;
older packages return the DDL strings directly. Its DDL names no index (``CREATE INDEX ON …``), so
PostgreSQL picks the names; the benchmark applies its distinct statements as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dbopt.targets.base import Data, Target

MIN_FILTER = 1000  # the function's defaults (pg_qualstats--2.1.x.sql)
MIN_SELECTIVITY = 30


@dataclass(frozen=True)
class QualstatsAdvice(Data):
    ddl: list[str]
    unoptimised: list[str]
    call: str


def qualstats_advice(target: Target) -> QualstatsAdvice:
    call = f"SELECT pg_qualstats_index_advisor(min_filter => {MIN_FILTER}, min_selectivity => {MIN_SELECTIVITY})"
    raw = target.execute(call)[0][0]
    data = json.loads(raw) if isinstance(raw, str) else raw
    # its distinct set: the function repeats one DDL once per query it serves
    ddl = list(dict.fromkeys(ix["ddl"] if isinstance(ix, dict) else ix for ix in data.get("indexes") or []))
    unoptimised = [u["qual"] if isinstance(u, dict) else u for u in data.get("unoptimised") or []]
    return QualstatsAdvice(ddl=ddl, unoptimised=unoptimised, call=call)


def apply_qualstats(target: Target, advice: QualstatsAdvice) -> None:
    for ddl in advice.ddl:
        target.execute(ddl)
