"""Which indexes are dbopt's own to drop or rebuild.

An index is dbopt's when it carries ``OWNER_MARK`` (written at build time), or when it is an INVALID
leftover of a build dbopt recorded in the history store before starting it (a crash mid-build
leaves no mark on the index). Anything else under a dbopt name is someone else's: reported, left
alone, and the planned index is built under another name.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from dbopt.history import leases
from dbopt.targets.base import IndexInfo, IndexSpec, Target
from dbopt.targets.dialects import traits


def owns(target: Target, ix: IndexInfo) -> bool:
    if ix.owned:
        return True
    if ix.valid:
        return False
    with leases.opened() as engine:
        return leases.build_started(engine, target.identity(), ix.name)


def record_build(target: Target, name: str) -> None:
    """Before a build: dbopt (the run holding the database's lease) builds ``name`` there."""
    key = target.identity()
    with leases.opened() as engine:
        holder = leases.current(engine, key)
        leases.record_build(engine, key, name, holder.run_id if holder else "")


def forget_build(target: Target, name: str) -> None:
    """After a build that left nothing behind: the mark on the index (or its absence) says it all."""
    with leases.opened() as engine:
        leases.forget_build(engine, target.identity(), name)


def index_named(target: Target, table: str, name: str, schema: str | None = None) -> IndexInfo | None:
    qualified = f"{schema}.{table}" if schema and traits(target.dialect).schema_qualified_stats else table
    return next((ix for ix in target.indexes([qualified]) if ix.name.lower() == name.lower()), None)


def describe(ix: IndexInfo) -> dict[str, Any]:
    state = "valid" if ix.valid else "INVALID"
    return {"table": ix.table, "index": ix.name, "columns": list(ix.columns), "valid": ix.valid,
            "reason": f"a {state} index on ({', '.join(ix.columns)}) under a dbopt name that dbopt did not "
                      "build: reported and left alone"}  # fmt: skip


def other_name(spec: IndexSpec) -> IndexSpec:
    """The same index under a second deterministic name (the first is taken by a foreign index)."""
    tag = hashlib.sha1(f"{spec.name}/2".encode()).hexdigest()[:8]
    return dataclasses.replace(spec, name=f"{spec.name[: IndexSpec.MAX_NAME - 9]}_{tag}")
