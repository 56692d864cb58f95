"""Concrete parameter values for a workload query, drawn deterministically from a seeded generator."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from dbopt.demo_data.workload import Param, Query

TIME_FORMATS = {"timestamp": "%Y-%m-%d %H:%M:%S", "date": "%Y-%m-%d"}


def draw(query: Query, rng: random.Random, sizes: Mapping[str, int]) -> dict[str, Any]:
    """One set of values for ``query``'s parameters, in the order the file lists them.

    ``sizes`` (from ``dbopt.demo_data.sizes.sizes``) resolves bounds such as ``[1, users]``.
    """
    values: dict[str, Any] = {}
    time_kinds: dict[str, str] = {}  # timestamp/date parameter -> its kind, for "after" offsets
    for param in query.params:
        values[param.name] = _value(param, rng, values, time_kinds, sizes)
    return values


def _value(
    param: Param, rng: random.Random, values: dict[str, Any], time_kinds: dict[str, str], sizes: Mapping[str, int]
) -> Any:
    spec = param.spec
    if param.kind == "choice":
        return rng.choices(spec["choice"], weights=spec.get("weights"))[0]
    if param.kind == "int":
        lo, hi = (b if isinstance(b, int) else sizes[b] for b in spec["int"])
        n = rng.randint(lo, max(lo, hi))
        return spec["format"].format(n, **values) if "format" in spec else n
    if param.kind == "text":
        return spec["text"].format(**values)
    if param.kind == "after":
        kind = time_kinds[param.name] = time_kinds[spec["after"]]
        unit = "hours" if "hours" in spec else "days"
        start = datetime.strptime(values[spec["after"]], TIME_FORMATS[kind])
        return (start + timedelta(**{unit: rng.randint(*spec[unit])})).strftime(TIME_FORMATS[kind])
    lo, hi = (datetime.fromisoformat(str(b)) for b in spec[param.kind])
    time_kinds[param.name] = param.kind
    if param.kind == "date":
        return (lo + timedelta(days=rng.randint(0, (hi - lo).days))).strftime(TIME_FORMATS["date"])
    return (lo + timedelta(seconds=rng.randint(0, int((hi - lo).total_seconds())))).strftime(TIME_FORMATS["timestamp"])
