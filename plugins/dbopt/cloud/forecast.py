"""Scaling learned from traffic: min instances for the next hour from the same hour in past weeks.

A scaling rule may carry ``forecast:`` (see ``parse_forecast``)::

    forecast: {container_concurrency: 80, headroom: 1.2, weeks: 4, min_weeks: 2}

History is each hour's peak concurrency (requests in flight), keyed by the hour's start in unix seconds.
The prediction for an hour is the ``quantile`` of that local hour-of-week over the last ``weeks`` weeks
(a holiday or a one-off spike in one week does not set it), scaled by how the last complete hour compared
with its own seasonal value (today busier or quieter than usual), clamped to [0.5, 2]. Then
``min_instances = ceil(peak / container_concurrency * headroom)`` bounded by ``floor`` (default: the
rule's default min) and ``ceiling`` (default: the max instances in force). Fewer than ``min_weeks``
weeks of history: no forecast, the fixed windows decide. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dbopt.targets.base import Data

HOUR_S = 3600
LEVEL_CLAMP = (0.5, 2.0)  # one unusual hour may halve or double the seasonal value, never more
_FIELDS = {"container_concurrency", "headroom", "weeks", "min_weeks", "quantile", "floor", "ceiling"}

# Peak requests in flight per hour. By Little's law the rate of summed request seconds is the mean number in
# flight; its 1-minute maximum within the hour is the peak ([59m:1m]: a 1h subquery would also take the
# previous hour's last minute, its range being closed on the left). Names match include/demo_service/app.py.
PROMQL_PEAK_CONCURRENCY = "max_over_time(sum(rate(http_request_duration_seconds_sum$sel[1m]))[59m:1m])"


@dataclass(frozen=True)
class ForecastSettings(Data):
    container_concurrency: int  # requests one instance serves at once (Cloud Run containerConcurrency)
    headroom: float = 1.2
    weeks: int = 4
    min_weeks: int = 2
    quantile: float = 0.75
    floor: int | None = None  # None: the rule's default min_instances
    ceiling: int | None = None  # None: the max_instances in force at that hour


@dataclass(frozen=True)
class Forecast(Data):
    hour_start: int  # unix seconds
    peak: float | None  # predicted peak concurrency; None = too little history
    weeks_seen: int
    min_instances: int | None  # None = fall back to the fixed windows
    reason: str


def parse_forecast(value: Any, where: str) -> ForecastSettings:
    """The rule field; ``ValueError`` names the field and the fix (the caller prefixes the file)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping with keys {sorted(_FIELDS)}")
    if unknown := sorted(set(value) - _FIELDS):
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_FIELDS)}")
    ints = {"container_concurrency": 1, "weeks": 1, "min_weeks": 1, "floor": 0, "ceiling": 1}
    for field, low in ints.items():
        got = value.get(field)
        if (got is not None or field == "container_concurrency") and (
            not isinstance(got, int) or isinstance(got, bool) or got < low
        ):
            raise ValueError(f"{where}.{field}: must be a whole number >= {low}, got {got!r}")
    settings = ForecastSettings(**value)
    if not (isinstance(settings.headroom, int | float) and 1.0 <= settings.headroom <= 5.0):
        raise ValueError(f"{where}.headroom: must be a number from 1.0 to 5.0, got {settings.headroom!r}")
    if not (isinstance(settings.quantile, int | float) and 0.0 <= settings.quantile <= 1.0):
        raise ValueError(f"{where}.quantile: must be a number from 0 to 1, got {settings.quantile!r}")
    if settings.min_weeks > settings.weeks:
        raise ValueError(f"{where}.min_weeks: {settings.min_weeks} exceeds weeks {settings.weeks}; lower it")
    if settings.floor is not None and settings.ceiling is not None and settings.floor > settings.ceiling:
        raise ValueError(f"{where}: floor {settings.floor} exceeds ceiling {settings.ceiling}; swap them")
    return settings


def hour_start(t: float) -> int:
    return int(t // HOUR_S * HOUR_S)


def same_hour_weeks_ago(start: int, weeks: int, timezone: str) -> list[int]:
    """Start of the same local hour-of-week 1..``weeks`` weeks before (local, so it follows DST)."""
    tz = ZoneInfo(timezone)
    local = datetime.fromtimestamp(start, UTC).astimezone(tz).replace(tzinfo=None)
    return [hour_start((local - timedelta(weeks=k)).replace(tzinfo=tz).timestamp()) for k in range(1, weeks + 1)]


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _seasonal(history: Mapping[int, float], start: int, settings: ForecastSettings, timezone: str) -> list[float]:
    return [history[h] for h in same_hour_weeks_ago(start, settings.weeks, timezone) if h in history]


def predict_peak(
    history: Mapping[int, float], start: int, settings: ForecastSettings, timezone: str
) -> tuple[float | None, int, str]:
    """(predicted peak concurrency for the hour at ``start``, weeks of history used, how)."""
    seen = _seasonal(history, start, settings, timezone)
    if len(seen) < settings.min_weeks:
        return None, len(seen), f"{len(seen)} of {settings.min_weeks} weeks of history"
    seasonal = quantile(seen, settings.quantile)
    last = start - HOUR_S
    last_seen = _seasonal(history, last, settings, timezone)
    if last not in history or len(last_seen) < settings.min_weeks or quantile(last_seen, settings.quantile) <= 0:
        return seasonal, len(seen), f"q{settings.quantile:g} of {len(seen)} weeks = {seasonal:.1f}"
    level = history[last] / quantile(last_seen, settings.quantile)
    level = min(max(level, LEVEL_CLAMP[0]), LEVEL_CLAMP[1])
    how = f"q{settings.quantile:g} of {len(seen)} weeks = {seasonal:.1f}, x{level:.2f} from the last hour"
    return seasonal * level, len(seen), how


def forecast_min_instances(
    history: Mapping[int, float],
    start: int,
    settings: ForecastSettings,
    *,
    timezone: str,
    floor: int,
    ceiling: int,
) -> Forecast:
    """The next hour's min instances; ``floor``/``ceiling`` apply where the settings name none."""
    peak, weeks, how = predict_peak(history, start, settings, timezone)
    if peak is None:
        return Forecast(start, None, weeks, None, f"fixed windows: {how}")
    low = settings.floor if settings.floor is not None else floor
    high = settings.ceiling if settings.ceiling is not None else ceiling
    raw = math.ceil(peak / settings.container_concurrency * settings.headroom - 1e-9)
    wanted = min(max(raw, low), high)
    bound = "" if wanted == raw else f", bounded to [{low}, {high}]"
    return Forecast(
        start,
        peak,
        weeks,
        wanted,
        f"{how}; ceil({peak:.1f} / {settings.container_concurrency} x {settings.headroom:g}) = {raw}{bound}",
    )


def history_from_matrix(values: Sequence[Sequence[Any]]) -> dict[int, float]:
    """Prometheus ``query_range`` values ``[[t, "v"], ...]`` (the hour's end) → ``{hour start: peak}``."""
    history = {}
    for t, v in values:
        value = float(v)
        if math.isfinite(value):
            history[hour_start(float(t) - 1)] = value
    return history
