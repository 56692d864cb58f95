"""The daily report (sent at 17:00 team time): the day's runs across plans, from the history store.

Per plan: the day's runs and their outcome, the newest health gate, indexes kept, reverted and dropped
as unused, the canary, and the workload's week-over-week change; then the scaling DAG's changes; then
charts (the weekly trend of every plan, and before/after latency of each plan's newest run of the day).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dbopt.history import HistoryStore, facts
from dbopt.history.store import as_utc
from dbopt.report.charts import latency_chart, trend_chart
from dbopt.report.mail import HtmlEmail, content_id
from dbopt.report.render import render, scaling_rows

TREND_WEEKS = 8


@dataclass(frozen=True)
class DailyReport:
    email: HtmlEmail
    empty: bool  # no run and no scaling change in the window: nothing new to tell
    since: datetime
    until: datetime
    plans: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    scaling: list[dict[str, Any]]

    def log_summary(self) -> str:
        """A few lines for the task log (what the e-mail says, without the HTML)."""
        lines = [self.email.subject]
        lines += [
            f"  {p['plan']}: {p['runs']} run(s), latest {p['latest_outcome'] or 'none'}, "
            f"health {p['health_decision'] or 'unknown'}, kept {p['kept']}, reverted {p['reverted']}, "
            f"dropped unused {p['dropped_unused']}"
            for p in self.plans
        ]
        lines += [f"  scaling {s['region']}/{s['service']}: {s['before']} → {s['after']}" for s in self.scaling]
        return "\n".join(lines)


def _week_over_week(trend: list[dict[str, Any]]) -> dict[str, Any]:
    """This week's and last week's workload mean latency and the relative change (None if either is missing)."""
    this, last = (trend[-1] if trend else {}), (trend[-2] if len(trend) > 1 else {})
    now, before = this.get("workload_mean_ms"), last.get("workload_mean_ms")
    change = (now - before) / before if now is not None and before else None
    return {"this_week": now, "last_week": before, "change": change}


def _plan_row(store: HistoryStore, plan: str, runs: list[dict[str, Any]], trend: list[dict[str, Any]]) -> dict:
    health = store.latest_health(plan)
    latest = runs[-1] if runs else None
    return {
        "plan": plan,
        "runs": len(runs),
        "outcomes": [r["outcome"] for r in runs],
        "latest_outcome": latest["outcome"] if latest else None,
        "kept": sum(r["indexes_kept"] for r in runs),
        "reverted": sum(r["indexes_reverted"] for r in runs),
        "dropped_unused": sum(r["indexes_dropped_unused"] for r in runs),
        "canary": ", ".join(r["canary_decision"] for r in runs if r["canary_decision"]) or None,
        "health_decision": health["gate_decision"] if health else None,
        "health_reason": health["gate_reason"] if health else None,
        "health_at": health["recorded_at"] if health else None,
        "health_failing": [f for f in (health or {}).get("figures", []) if f["verdict"] != "pass"],
        "wow": _week_over_week(trend),
    }


def _run_row(run: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    when = run["started_at"] or run["recorded_at"]
    return {
        "plan": run["plan_id"],
        "run_id": run["run_id"],
        "at": when.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z"),
        "outcome": run["outcome"],
        "gate": run["gate_decision"],
        "reason": run["canary_reason"] or run["gate_reason"] or "",
        "created": run["indexes_created"],
        "kept": run["indexes_kept"],
        "reverted": run["indexes_reverted"],
        "dropped_unused": run["indexes_dropped_unused"],
        "workload_mean_ms": run["workload_mean_ms"],
        "chart": f"run-{run['id']}",
    }


def _subject(day: str, runs: list[dict[str, Any]], scaling: list[dict[str, Any]]) -> str:
    if not runs and not scaling:
        return f"[dbopt] Daily report {day}: nothing new"

    def count(word: str) -> int:
        return sum(r["outcome"].split(":")[-1] == word for r in runs)

    parts = [f"{len(runs)} run(s)"]
    parts += [f"{count(w)} {label}" for w, label in (("kept", "kept"), ("reverted", "reverted"), ("no_go", "NO-GO"),
              ("failed", "failed"), ("rolled_back", "rolled back")) if count(w)]  # fmt: skip
    if scaling:
        parts.append(f"{len(scaling)} scaling change(s)")
    return f"[dbopt] Daily report {day}: " + ", ".join(parts)


def build_daily_report(
    store: HistoryStore,
    until: datetime,
    *,
    tz: str = "Asia/Seoul",
    plan_ids: Iterable[str] = (),
    since: datetime | None = None,
) -> DailyReport:
    """The report for the 24 hours up to ``until`` (or [since, until)); ``plan_ids``: plans to list even
    without a run in the window (e.g. every plan file), besides every plan the history knows."""
    zone = ZoneInfo(tz)
    until = as_utc(until, "until")
    start = as_utc(since, "since") or until - timedelta(days=1)
    runs = store.runs(start, until, with_record=True)
    scaling = store.scaling_actions(start, until)
    plans = sorted({*plan_ids, *store.plan_ids()})
    trends = {p: store.trend(p, TREND_WEEKS, until=until) for p in plans}
    plan_rows = [_plan_row(store, p, [r for r in runs if r["plan_id"] == p], trends[p]) for p in plans]
    run_rows = [_run_row(r, zone) for r in runs]

    images: dict[str, bytes] = {}
    trend_png = trend_chart(trends, f"Workload latency per week (last {TREND_WEEKS} weeks)")
    if trend_png:
        images["trend"] = trend_png
    # one chart per plan, its newest run with a benchmark: a busy day does not make a long e-mail
    charted: set[str] = set()
    for run, row in reversed(list(zip(runs, run_rows, strict=True))):
        if row["plan"] in charted:
            continue
        png = latency_chart(facts.bench_rows(run["record"]), f"{row['plan']} {row['run_id']}: before / after")
        if png:
            images[row["chart"]] = png
            charted.add(row["plan"])

    day = until.astimezone(zone).strftime("%Y-%m-%d")
    scaling_table = scaling_rows(scaling, zone)
    html = render(
        "daily_report.html.j2",
        day=day,
        tz=tz,
        since=start.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        until=until.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
        plans=plan_rows,
        runs=run_rows,
        scaling=scaling_table,
        images={name: f"cid:{content_id(name)}" for name in images},
        trend_weeks=TREND_WEEKS,
    )
    email = HtmlEmail(_subject(day, runs, scaling), html, {content_id(n): png for n, png in images.items()})
    return DailyReport(email, not runs and not scaling, start, until, plan_rows, run_rows, scaling_table)
