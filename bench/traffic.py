"""A deterministic traffic trace for the scaling backtest: requests in flight, one value per minute.

Shape (local time of ``timezone``): a night floor, a working-day plateau with the seed's three spikes
(08-09, 12-13, 17-18, each ramping up from ten minutes before), weekends at about half the weekday level
without the morning spike, 3 % growth per week, per-minute noise, unannounced spikes (2-3x for 10-40
minutes, about three a week) and one weekday holiday (``holiday_day``, run at weekend level). The same
``seed`` gives the same trace on every machine.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Trace:
    start: datetime  # timezone-aware, on an hour boundary
    concurrency: tuple[float, ...]  # one value per minute from start

    def minute_time(self, i: int) -> float:
        return self.start.timestamp() + 60 * i


def _bump(minute: float, start: float, end: float, height: float, ramp: float = 10.0) -> float:
    """``height`` between start and end (minutes of the day), ramping up linearly over ``ramp`` minutes before."""
    if start - ramp <= minute < start:
        return height * (minute - (start - ramp)) / ramp
    return height if start <= minute < end else 0.0


def _level(local: datetime, holiday: bool) -> float:
    """Expected requests in flight at a local wall-clock minute, before growth, noise and spikes."""
    minute = local.hour * 60 + local.minute
    weekend = local.weekday() >= 5 or holiday
    # Daytime plateau: a smooth hump from 07:00 to 23:00 over a night floor of 40.
    day = max(0.0, math.sin(math.pi * (minute - 420) / 960)) if 420 <= minute < 1380 else 0.0
    level = 40 + 110 * day
    if weekend:
        return 30 + 0.5 * (level - 40) + _bump(minute, 720, 780, 60)
    return level + _bump(minute, 480, 540, 170) + _bump(minute, 720, 780, 170) + _bump(minute, 1020, 1080, 100)


def generate(*, weeks: int = 8, seed: int = 17, timezone: str = "America/Chicago", holiday_day: int = 36) -> Trace:
    """``weeks`` weeks from a Monday 00:00 local; ``holiday_day`` is the day index (from 0) that is a holiday."""
    rng = random.Random(seed)
    tz = ZoneInfo(timezone)
    start = datetime(2026, 3, 2, tzinfo=tz)  # a Monday; the trace crosses the US DST change on 8 March
    minutes = weeks * 7 * 24 * 60
    spikes: list[tuple[int, int, float]] = []
    for _ in range(3 * weeks):
        at = rng.randrange(minutes)
        spikes.append((at, at + rng.randint(10, 40), rng.uniform(2.0, 3.0)))
    values = []
    origin = start.astimezone(UTC)  # step in real minutes: a DST day has 23 or 25 local hours
    for i in range(minutes):
        local = (origin + timedelta(minutes=i)).astimezone(tz)
        day_index = (local.date() - start.date()).days
        level = _level(local, day_index == holiday_day) * (1.03 ** (i / (7 * 24 * 60)))
        factor = max((k for a, b, k in spikes if a <= i < b), default=1.0)
        values.append(round(level * factor * rng.lognormvariate(0.0, 0.08), 2))
    return Trace(start, tuple(values))
