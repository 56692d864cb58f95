"""The demo workload file (include/demo/workload.yaml): named queries, weights and parameter generators.

Loading validates everything up front, so a typo fails with the file, the field and the fix instead of
halfway through a replay. The file format is described at the top of workload.yaml.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from dbopt.demo_data.errors import DemoDataError
from dbopt.demo_data.sizes import DEMO_DIR, FAMILY_OF_DIALECT, SERVER_SIZES, SQLITE_SIZES

DEFAULT_WORKLOAD = DEMO_DIR / "workload.yaml"

# ":name" is a placeholder; "::" (a PostgreSQL cast) and "10:30" inside a time are not.
PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

# generator kind -> the other keys it accepts
GENERATORS: dict[str, frozenset[str]] = {
    "choice": frozenset({"weights"}),
    "int": frozenset({"format"}),
    "timestamp": frozenset(),
    "date": frozenset(),
    "after": frozenset({"hours", "days"}),
    "text": frozenset(),
}
FAMILY_DIALECTS = {
    family: tuple(d for d, f in FAMILY_OF_DIALECT.items() if f == family) for family in set(FAMILY_OF_DIALECT.values())
}
FAMILY_SIZES = {"server": set(SERVER_SIZES), "sqlite": set(SQLITE_SIZES) | {"billing_rates"}}
WRITE_VERBS = ("insert", "update", "delete", "replace")


@dataclass(frozen=True)
class Param:
    """One parameter generator: ``kind`` is a key of GENERATORS, ``spec`` its mapping from the file."""

    name: str
    kind: str
    spec: Mapping[str, Any]

    def references(self) -> set[str]:
        """Earlier parameters this one is computed from."""
        if self.kind == "after":
            return {self.spec["after"]}
        template = self.spec.get("text" if self.kind == "text" else "format")
        if not isinstance(template, str):
            return set()
        return {f for _, f, _, _ in string.Formatter().parse(template) if f}


@dataclass(frozen=True)
class Query:
    """A named statement of the workload with its relative frequency and parameter generators."""

    name: str
    weight: float
    sql: Mapping[str, str]  # dialect -> text with :name placeholders
    params: tuple[Param, ...]

    def text(self, dialect: str) -> str:
        return self.sql[dialect]

    @property
    def is_write(self) -> bool:
        first = next(iter(self.sql.values())).lstrip().split(None, 1)[0].lower()
        return first in WRITE_VERBS


@dataclass(frozen=True)
class Workload:
    """All query families of a workload file; ``queries(dialect)`` is what one engine runs."""

    path: str
    families: Mapping[str, tuple[Query, ...]]

    def queries(self, dialect: str) -> tuple[Query, ...]:
        family = FAMILY_OF_DIALECT.get(dialect)
        if family not in self.families:
            raise DemoDataError(f"{self.path}: no {family or dialect!r} family of queries for dialect {dialect!r}")
        return self.families[family]


def load_workload(path: str | Path | None = None) -> Workload:
    """Read and validate a workload file (default: the bundled include/demo/workload.yaml)."""
    path = Path(path) if path is not None else DEFAULT_WORKLOAD
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise DemoDataError(f"cannot read workload file {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise DemoDataError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict) or not data:
        raise DemoDataError(f"{path}: expected a mapping of families ({', '.join(sorted(FAMILY_DIALECTS))})")
    families = {}
    for family, queries in data.items():
        if family not in FAMILY_DIALECTS:
            raise DemoDataError(f"{path}: unknown family {family!r}; use one of {sorted(FAMILY_DIALECTS)}")
        if not isinstance(queries, dict) or not queries:
            raise DemoDataError(f"{path}: {family}: expected a mapping of query name -> query")
        families[family] = tuple(_query(path, family, name, spec) for name, spec in queries.items())
    return Workload(path=str(path), families=families)


def _query(path: Path, family: str, name: str, spec: Any) -> Query:
    where = f"{path}: {family}.{name}"
    if not isinstance(spec, dict) or set(spec) - {"weight", "sql", "params"} or "sql" not in spec:
        raise DemoDataError(f"{where}: expected keys sql, weight and optionally params")
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
        raise DemoDataError(f"{where}.weight: must be a positive number, got {weight!r}")
    dialects = FAMILY_DIALECTS[family]
    sql = spec["sql"]
    if isinstance(sql, str):
        sql = dict.fromkeys(dialects, sql)
    if not isinstance(sql, dict) or set(sql) != set(dialects) or not all(isinstance(t, str) for t in sql.values()):
        raise DemoDataError(f"{where}.sql: give one statement, or one per dialect: {', '.join(dialects)}")
    raw_params = spec.get("params") or {}
    if not isinstance(raw_params, dict):
        raise DemoDataError(f"{where}.params: expected a mapping of parameter name -> generator")
    params: list[Param] = []
    for pname, pspec in raw_params.items():
        params.append(_param(f"{where}.params.{pname}", family, pname, pspec, {p.name: p for p in params}))
    used = {r for p in params for r in p.references()}
    for dialect, text in sql.items():
        placeholders = set(PLACEHOLDER.findall(text))
        if missing := placeholders - {p.name for p in params}:
            raise DemoDataError(f"{where}.sql ({dialect}): placeholders without a generator: {sorted(missing)}")
        used |= placeholders
    if unused := [p.name for p in params if p.name not in used]:
        raise DemoDataError(f"{where}.params: {unused} used by neither the sql nor another parameter; remove them")
    return Query(name=name, weight=float(weight), sql=sql, params=tuple(params))


def _param(where: str, family: str, name: str, spec: Any, earlier: dict[str, Param]) -> Param:
    kinds = [k for k in GENERATORS if isinstance(spec, dict) and k in spec]
    if len(kinds) != 1:
        raise DemoDataError(f"{where}: expected a mapping with exactly one of {', '.join(GENERATORS)}")
    kind = kinds[0]
    if extra := set(spec) - {kind} - GENERATORS[kind]:
        raise DemoDataError(f"{where}: {kind} does not take {sorted(extra)}")
    value = spec[kind]
    if kind == "choice":
        weights = spec.get("weights")
        if not isinstance(value, list) or not value:
            raise DemoDataError(f"{where}.choice: expected a non-empty list of values")
        if weights is not None and (
            not isinstance(weights, list) or len(weights) != len(value) or not all(_positive(w) for w in weights)
        ):
            raise DemoDataError(f"{where}.weights: expected {len(value)} positive numbers, one per choice")
    elif kind == "int":
        _pair(where, kind, value, lambda b: _is_bound(b, family))
    elif kind in ("timestamp", "date"):
        _pair(where, kind, value, lambda b: _is_time(b, kind))
    elif kind == "after":
        base = earlier.get(value)
        if base is None or base.kind not in ("timestamp", "date", "after"):
            raise DemoDataError(f"{where}.after: must name an earlier timestamp or date parameter, got {value!r}")
        units = [u for u in ("hours", "days") if u in spec]
        if len(units) != 1:
            raise DemoDataError(f"{where}: after needs exactly one of hours: [lo, hi] or days: [lo, hi]")
        _pair(f"{where}.{units[0]}", units[0], spec[units[0]], lambda b: isinstance(b, int) and b >= 0)
    param = Param(name=name, kind=kind, spec=dict(spec))
    key = "text" if kind == "text" else "format"
    if key in spec:
        if not isinstance(spec[key], str):
            raise DemoDataError(f"{where}.{key}: expected a text like 'user{{}}' or 'PRJ{{project_id}}'")
        if unknown := param.references() - set(earlier):
            raise DemoDataError(f"{where}.{key}: {sorted(unknown)} are not earlier parameters of this query")
    return param


def _is_bound(b: Any, family: str) -> bool:
    """An integer, or the name of a data size (resolved per scale when values are drawn)."""
    return (isinstance(b, int) and not isinstance(b, bool)) or (isinstance(b, str) and b in FAMILY_SIZES[family])


def _positive(w: Any) -> bool:
    return isinstance(w, int | float) and not isinstance(w, bool) and w > 0


def _is_time(value: Any, kind: str) -> bool:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return kind == "timestamp" or parsed == datetime(parsed.year, parsed.month, parsed.day)


def _pair(where: str, kind: str, value: Any, valid: Any) -> None:
    if not isinstance(value, list) or len(value) != 2 or not all(valid(b) for b in value):
        hint = {
            "int": "integers or data sizes (e.g. [1, users])",
            "timestamp": "'YYYY-MM-DD HH:MM:SS' texts",
            "date": "'YYYY-MM-DD' texts",
        }.get(kind, "non-negative integers")
        raise DemoDataError(f"{where}: expected [lo, hi] with {hint}, got {value!r}")
    lo, hi = (datetime.fromisoformat(str(b)) if kind in ("timestamp", "date") else b for b in value)
    if type(lo) is type(hi) and not isinstance(lo, str) and lo > hi:
        raise DemoDataError(f"{where}: lo is after hi in {value!r}; swap them")
