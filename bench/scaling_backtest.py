"""Backtest of Cloud Run min-instance strategies on a generated traffic trace (``bench/traffic.py``).

    .venv/bin/python bench/scaling_backtest.py [--weeks 8] [--seed 17] [--headroom 1.2]

Each strategy sets min instances once an hour (as ``dags/dbopt_scaling.py`` does); Cloud Run's own
autoscaler adds instances on top. Per minute: an instance is needed per ``container_concurrency``
requests in flight; instances the autoscaler starts are ready one minute after the demand that asked for
them (cold start) and stay up 15 idle minutes. Cost = instance-hours running (min instances included);
cold starts = minutes whose demand is above ready capacity. Only the weeks after the first
``--history-weeks`` are scored, so every strategy has the same history to learn from.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "bench")]

from traffic import Trace, generate  # noqa: E402

from dbopt.cloud.forecast import ForecastSettings, forecast_min_instances  # noqa: E402
from dbopt.cloud.scaling import ServiceRule, load_rules  # noqa: E402

COLD_START_MIN = 1
IDLE_KEEP_MIN = 15
RULES = ROOT / "include" / "scaling" / "rules.yaml"


@dataclass(frozen=True)
class Score:
    strategy: str
    instance_hours: float
    cold_minutes: int
    peak_min_instances: int
    note: str


def hourly_peaks(trace: Trace) -> list[float]:
    values = trace.concurrency
    return [max(values[i : i + 60]) for i in range(0, len(values), 60)]


def simulate(trace: Trace, min_by_hour: Sequence[int], cc: int, first_minute: int) -> tuple[float, int]:
    """(instance-hours, minutes with demand above ready capacity) from ``first_minute`` on."""
    needed = [math.ceil(v / cc) for v in trace.concurrency]
    running_minutes = 0
    cold = 0
    for t in range(first_minute, len(needed)):
        floor = min_by_hour[t // 60]
        started = max(needed[max(0, t - IDLE_KEEP_MIN) : t - COLD_START_MIN + 1], default=0)
        ready = max(floor, started)
        running_minutes += max(floor, started, needed[t])  # starting instances are billed too
        cold += trace.concurrency[t] > ready * cc
    return running_minutes / 60, cold


def strategies(
    trace: Trace, rule: ServiceRule, settings: ForecastSettings
) -> dict[str, tuple[Callable[[int], int], str]]:
    peaks = hourly_peaks(trace)
    start = int(trace.start.timestamp())
    history = {start + 3600 * h: p for h, p in enumerate(peaks)}  # forecast reads only hours before the one asked
    floor, cc = rule.default.min_instances, settings.container_concurrency

    def at(h: int) -> datetime:
        return datetime.fromtimestamp(start + 3600 * h, UTC)

    def fixed(h: int) -> int:
        return rule.bounds_at(at(h)).min_instances

    def forecast(h: int) -> int:
        ceiling = rule.bounds_at(at(h)).max_instances
        result = forecast_min_instances(
            history, start + 3600 * h, settings, timezone=rule.timezone, floor=floor, ceiling=ceiling
        )
        return fixed(h) if result.min_instances is None else result.min_instances

    def reactive(h: int) -> int:
        last = peaks[h - 1] if h else 0.0
        return min(max(math.ceil(last / cc * settings.headroom), floor), rule.bounds_at(at(h)).max_instances)

    return {
        "fixed windows (rules.yaml)": (fixed, "seed 001 windows, every day"),
        f"forecast (q{settings.quantile:g} of {settings.weeks} weeks, x{settings.headroom:g})": (
            forecast,
            "same hour-of-week + last-hour level",
        ),
        f"reactive (last hour's peak x{settings.headroom:g})": (reactive, "set hourly from the hour before"),
        f"autoscaler only (min {floor})": (lambda h: floor, "the rule's default floor all day"),
    }


def run(
    weeks: int, seed: int, history_weeks: int, settings: ForecastSettings, service: str, region: str
) -> list[Score]:
    rule = next(r for r in load_rules(RULES).rules if r.key == (service, region))
    trace = generate(weeks=weeks, seed=seed, timezone=rule.timezone)
    hours = len(trace.concurrency) // 60
    first = history_weeks * 7 * 24 * 60
    scores = []
    for name, (choose, note) in strategies(trace, rule, settings).items():
        mins = [choose(h) for h in range(hours)]
        instance_hours, cold = simulate(trace, mins, settings.container_concurrency, first)
        scores.append(Score(name, instance_hours, cold, max(mins[first // 60 :]), note))
    return scores


def table(scores: Sequence[Score], scored_minutes: int) -> str:
    lines = [
        "| strategy | instance-hours | minutes above ready capacity | % of minutes | highest min |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in scores:
        share = 100 * s.cold_minutes / scored_minutes
        lines.append(
            f"| {s.strategy} | {s.instance_hours:.0f} | {s.cold_minutes} | {share:.2f} | {s.peak_min_instances} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--history-weeks", type=int, default=4)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--container-concurrency", type=int, default=80)
    parser.add_argument("--headroom", type=float, default=1.2)
    parser.add_argument("--quantile", type=float, default=0.75)
    parser.add_argument("--service", default="ion-api")
    parser.add_argument("--region", default="us-central1")
    args = parser.parse_args(argv)
    if args.weeks <= args.history_weeks:
        parser.error("--weeks must exceed --history-weeks: the scored weeks come after the history")
    settings = ForecastSettings(
        args.container_concurrency, args.headroom, weeks=args.history_weeks, min_weeks=2, quantile=args.quantile
    )
    scores = run(args.weeks, args.seed, args.history_weeks, settings, args.service, args.region)
    scored = (args.weeks - args.history_weeks) * 7 * 24 * 60
    print(
        f"{args.service}/{args.region}, seed {args.seed}: {args.weeks} weeks generated, "
        f"last {args.weeks - args.history_weeks} scored ({scored} minutes), "
        f"container concurrency {args.container_concurrency}"
    )
    print(table(scores, scored))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
