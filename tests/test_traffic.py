"""Traffic edits as ``gcloud run services update-traffic`` makes them: only what is named changes."""

from __future__ import annotations

import pytest

from dbopt.cloud import traffic
from dbopt.cloud.gcp import CloudError


def _t(revision: str, percent: int = 0, tag: str = "", kind: str = traffic.REVISION) -> dict:
    return {"type": kind, "revision": revision, "percent": percent, "tag": tag}


def test_named_revision_takes_its_share_the_others_keep_theirs_pro_rata() -> None:
    current = [_t("a", 60), _t("b", 40), _t("a", 0, "stable")]
    assert traffic.edit(current, percents={"c": 10}, update_tags={"canary": "c"}) == [
        _t("a", 54),
        _t("b", 36),
        _t("a", 0, "stable"),
        _t("c", 10, "canary"),
    ]


def test_shares_stay_integers_that_add_up_to_100() -> None:
    edited = traffic.edit([_t("a", 34), _t("b", 33), _t("c", 33)], percents={"d": 25})
    assert sum(t["percent"] for t in edited) == 100 and [t["percent"] for t in edited] == [25, 25, 25, 25]


def test_tags_move_only_when_named() -> None:
    current = [_t("a", 100, "stable"), _t("b", 0, "canary")]
    moved = traffic.edit(current, update_tags={"canary": "c"})
    assert moved == [_t("a", 100, "stable"), _t("c", 0, "canary")]  # b's untagged 0% target is gone
    assert traffic.edit(moved, remove_tags=["canary"]) == [_t("a", 100, "stable")]


def test_to_latest_keeps_tagged_targets_at_zero() -> None:
    current = [_t("a", 50), _t("c", 50, "canary"), _t("a", 0, "stable")]
    promoted = traffic.edit(current, latest=100, remove_tags=["canary"])
    assert promoted == [_t("a", 0, "stable"), _t("", 100, kind=traffic.LATEST)]


def test_pin_latest_keeps_percent_and_tag() -> None:
    pinned = traffic.pin_latest([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "live"}], "a")
    assert pinned == [_t("a", 100, "live")]


def test_impossible_splits_are_refused() -> None:
    with pytest.raises(CloudError, match="90% would be left and no other revision holds traffic"):
        traffic.edit([_t("a", 0, "stable"), _t("b", 100)], percents={"b": 10})
    with pytest.raises(CloudError, match=r"integer 0\.\.100, got 120 for b"):
        traffic.edit([_t("a", 100)], percents={"b": 120})


def test_same_ignores_order_and_spelling() -> None:
    a = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "x", "percent": 100}, _t("y", 0, "t")]
    assert traffic.same(a, [_t("y", 0, "t"), _t("x", 100)])
