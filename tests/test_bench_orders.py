"""The benchmark harness's timing order (bench/workload_timing.py)."""

from __future__ import annotations

from collections import Counter

from bench.workload_timing import balanced_orders


def test_timing_orders_balance_who_follows_whom() -> None:
    """Each configuration is timed right after each other one equally often over a cycle of orders,
    so one configuration's leftover cache state does not bias the next (bench/README.md, issue 12)."""
    for names in (["none", "dbopt", "hand"], ["a", "b"], ["a", "b", "c", "d"]):
        orders = balanced_orders(names)
        assert all(sorted(o) == sorted(names) for o in orders)
        follows = Counter((o[i], o[i + 1]) for o in orders for i in range(len(o) - 1))
        assert len(follows) == len(names) * (len(names) - 1) and len(set(follows.values())) == 1
