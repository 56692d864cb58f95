"""Indexes a plan names explicitly ("orders", "customer_id, created_at DESC") → validated IndexSpec."""

from __future__ import annotations

from collections.abc import Sequence

from dbopt.targets.base import IndexSpec, Target, TargetError


class PlanIndexError(ValueError):
    """An explicit index in a plan names a table or column the database does not have."""


def spec_from_plan(
    target: Target,
    table: str,
    columns: str | Sequence[str],
    *,
    include: str | Sequence[str] = (),
    unique: bool = False,
    name: str = "",
) -> IndexSpec:
    """An IndexSpec for ``table`` after checking the table and every column exist.

    ``columns`` is a comma-separated string or a list; each entry may end in ASC or DESC.
    Column names take the catalog's spelling (matched case-insensitively).
    """
    try:
        stats = target.table_stats([table])[table]
    except TargetError as err:
        raise PlanIndexError(f"index on table {table!r}: the table does not exist ({err})") from None
    known = {c.lower(): c for c in stats.columns}

    def resolve(entry: str) -> str:
        col = known.get(entry.lower())
        if col is None:
            have = ", ".join(stats.columns) or "none found"
            raise PlanIndexError(f"index on table {table!r}: no column {entry!r} (columns: {have})")
        return col

    keys, descending = [], []
    for entry in _entries(columns):
        words = entry.split()
        direction = words[-1].upper() if len(words) > 1 else ""
        if direction not in ("", "ASC", "DESC") or len(words) > 2:
            raise PlanIndexError(f"index on table {table!r}: cannot read column {entry!r} (use 'name [ASC|DESC]')")
        keys.append(resolve(words[0].strip('"`')))
        descending.append(direction == "DESC")
    if not keys:
        raise PlanIndexError(f"index on table {table!r}: no columns given")
    return IndexSpec(
        table=table,
        columns=tuple(keys),
        descending=tuple(descending) if any(descending) else (),
        include=tuple(resolve(c.strip('"`')) for c in _entries(include)),
        unique=unique,
        name=name,
    )


def _entries(value: str | Sequence[str]) -> list[str]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    return [p.strip() for p in parts if p.strip()]
