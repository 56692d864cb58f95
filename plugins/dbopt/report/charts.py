"""Charts as PNG bytes (matplotlib, Agg backend: no display, safe in workers and tests).

Every chart plots measured values only and says on the chart what they are.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: workers have no display

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

BEFORE, AFTER = "#9aa5b1", "#1f77b4"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def latency_chart(rows: Sequence[Mapping[str, Any]], title: str) -> bytes | None:
    """Median (bar) and p95 (whisker) per query, before and after; None when nothing was measured.

    ``rows`` are ``facts.bench_rows`` entries of one target (``before``/``after`` summaries or None).
    """
    rows = [r for r in rows if r.get("before") or r.get("after")]
    if not rows:
        return None
    names = [str(r["query"])[:40] for r in rows]
    height = 0.38
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(rows)))
    for offset, arm, color in ((-height / 2, "before", BEFORE), (height / 2, "after", AFTER)):
        ys = [i + offset for i, r in enumerate(rows) if r.get(arm)]
        if not ys:
            continue
        medians = [r[arm]["median_ms"] for r in rows if r.get(arm)]
        p95 = [r[arm]["p95_ms"] - r[arm]["median_ms"] for r in rows if r.get(arm)]
        n = sorted({r[arm]["n"] for r in rows if r.get(arm)})
        label = f"{arm} (n={'/'.join(map(str, n))} runs per query)"
        ax.barh(ys, medians, height=height, color=color, label=label, xerr=[[0] * len(p95), p95], capsize=3)
    values = [r[a][k] for r in rows for a in ("before", "after") if r.get(a) for k in ("median_ms", "p95_ms")]
    if min(values) > 0 and max(values) / min(values) > 50:
        ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlabel("latency (ms): bar = median, whisker = p95 of the measured runs")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize="small", frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def trend_chart(series: Mapping[str, Sequence[Mapping[str, Any]]], title: str) -> bytes | None:
    """Workload mean latency per ISO week, one line per plan (``HistoryStore.trend`` rows); None when
    no week has a value."""
    plotted = {k: v for k, v in series.items() if any(w.get("workload_mean_ms") is not None for w in v)}
    if not plotted:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    labels: list[str] = []
    for plan, weeks in plotted.items():
        labels = labels if len(labels) >= len(weeks) else [w["week"] for w in weeks]
        ys = [w["workload_mean_ms"] if w.get("workload_mean_ms") is not None else float("nan") for w in weeks]
        ax.plot(range(len(ys)), ys, marker="o", label=plan)  # positions: weeks without a run stay on the axis
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("ms per call")
    ax.set_xlabel("ISO week (Σ total time / Σ calls of the extracted workload, newest record per run)")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=30, labelsize="small")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _png(fig)
