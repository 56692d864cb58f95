"""Traffic edits that leave alone what they do not own, as ``gcloud run services update-traffic`` does.

A target is plain data ``{"type": "LATEST" | "REVISION", "revision": str, "percent": int, "tag": str}``.
``edit`` sets the percentages of the revisions it names (``--to-revisions``) or of LATEST (``--to-latest``);
the rest of the traffic stays with the other targets that held it, in proportion (zero if the named ones
take 100%). Tags move only when named (``--update-tags`` / ``--remove-tags``): a ``stable`` tag someone
else set survives every canary step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dbopt.cloud.gcp import CloudError

LATEST, REVISION = "LATEST", "REVISION"
Target = dict[str, Any]


def edit(
    current: Iterable[Mapping[str, Any]],
    *,
    percents: Mapping[str, int] | None = None,
    latest: int | None = None,
    update_tags: Mapping[str, str] | None = None,
    remove_tags: Iterable[str] = (),
) -> list[Target]:
    """The new traffic list; raises CloudError if the named percentages cannot add up to 100."""
    percents = dict(percents or {})
    targets = [_target(t) for t in current]
    moved = set(remove_tags) | set(update_tags or {})
    for t in targets:
        if t["tag"] in moved:
            t["tag"] = ""
    for tag, revision in (update_tags or {}).items():
        holder = next(
            (t for t in targets if t["type"] == REVISION and t["revision"] == revision and not t["tag"]), None
        )
        if holder is None:
            targets.append({"type": REVISION, "revision": revision, "percent": 0, "tag": tag})
        else:
            holder["tag"] = tag
    named = {(REVISION, r): p for r, p in percents.items()}
    if latest is not None:
        named[(LATEST, "")] = latest
    for key, percent in named.items():
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise CloudError(f"traffic percent must be an integer 0..100, got {percent!r} for {key[1] or 'LATEST'}")
    if named:
        _apply(targets, named)
    kept = [t for t in targets if t["percent"] or t["tag"]]  # an untagged 0% target routes nothing
    if sum(t["percent"] for t in kept) != 100:
        raise CloudError(f"traffic would add up to {sum(t['percent'] for t in kept)}%, not 100%: {describe(kept)}")
    return kept


def pin_latest(current: Iterable[Mapping[str, Any]], revision: str) -> list[Target]:
    """LATEST targets pinned to ``revision`` (what serves now), so a new revision does not take their traffic."""
    targets = [_target(t) for t in current]
    for t in targets:
        if t["type"] == LATEST:
            t.update(type=REVISION, revision=revision)
    return targets


def describe(targets: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(
        f"{t['revision'] or 'LATEST'}={t['percent']}%" + (f" [{t['tag']}]" if t["tag"] else "") for t in targets
    )


def same(a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]]) -> bool:
    key = lambda t: (t["type"], t["revision"], t["percent"], t["tag"])  # noqa: E731
    return sorted(map(key, map(_target, a))) == sorted(map(key, map(_target, b)))


def _apply(targets: list[Target], named: dict[tuple[str, str], int]) -> None:
    """Give each named (type, revision) its percent on one target; others share the remainder pro rata."""
    for key, percent in named.items():
        mine = [t for t in targets if (t["type"], t["revision"]) == key]
        if not mine:
            mine = [{"type": key[0], "revision": key[1], "percent": 0, "tag": ""}]
            targets.append(mine[0])
        for t in mine:
            t["percent"] = 0
        max(mine, key=lambda t: (not t["tag"], t["percent"]))["percent"] = percent  # prefer the untagged entry
    rest = 100 - sum(named.values())
    others = [t for t in targets if (t["type"], t["revision"]) not in named and t["percent"] > 0]
    held = sum(t["percent"] for t in others)
    if rest < 0 or (rest > 0 and not held):
        shown = ", ".join(f"{r or 'LATEST'}={p}%" for (_, r), p in named.items())
        raise CloudError(f"cannot split traffic {shown}: {rest}% would be left and no other revision holds traffic")
    # largest remainder, so the shares stay integers that add up to ``rest``
    exact = [(t, rest * t["percent"] / held) for t in others]
    for t, share in exact:
        t["percent"] = int(share)
    leftover = rest - sum(t["percent"] for t in others)
    for t, _ in sorted(exact, key=lambda x: x[1] - int(x[1]), reverse=True)[:leftover]:
        t["percent"] += 1


def _target(t: Mapping[str, Any]) -> Target:
    kind = str(t.get("type", REVISION))
    kind = LATEST if kind.endswith("LATEST") else REVISION
    return {
        "type": kind,
        "revision": "" if kind == LATEST else t.get("revision", ""),
        "percent": int(t.get("percent", 0)),
        "tag": t.get("tag", ""),
    }
