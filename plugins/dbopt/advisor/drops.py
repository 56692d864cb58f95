"""Existing indexes worth dropping: INVALID leftovers, duplicates/left prefixes, unused ones.

Unique and primary-key indexes are never proposed (they are constraints, Azure's rule too).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from dbopt.advisor.candidates import as_index_info
from dbopt.advisor.model import DropCandidate
from dbopt.targets.base import IndexInfo, IndexSpec
from dbopt.targets.common import covers, mark_redundant


def drop_candidates(
    existing: Sequence[IndexInfo],
    recommended: Sequence[IndexSpec],
    in_use: Collection[str],
    include_unused: bool = True,
) -> list[DropCandidate]:
    """Reasons to drop existing indexes; ``in_use`` names indexes the workload's plans use."""
    out = []
    for ix in mark_redundant(existing):
        if ix.unique or ix.primary:
            continue
        reason = _reason(ix, recommended, in_use, include_unused)
        if reason:
            out.append(DropCandidate(ix.table, ix.name, reason, ix.size_bytes, ix.definition))
    return out


def _reason(ix: IndexInfo, recommended: Sequence[IndexSpec], in_use: Collection[str], include_unused: bool) -> str:
    if not ix.valid:
        return "INVALID leftover of a failed online build: maintained on every write, never used"
    if ix.redundant_with:
        return f"redundant: {ix.redundant_with} has the same leading columns"
    wider = next((s for s in recommended if covers(as_index_info(s), ix)), None)
    if wider is not None:
        return f"redundant once the recommended {wider.name} exists (same leading columns)"
    if include_unused and ix.unused and ix.name not in in_use:
        return "no scans recorded since the statistics were reset, and no workload plan uses it"
    return ""
