"""Predictive (time-of-day) scaling of Cloud Run services: the rule model, its YAML loader, the evaluator.

The week-17 plan (day 2, step 2.3) raises min/max instances ahead of known traffic spikes and lowers them
off-peak, re-evaluated every hour. A rule file lists, per (service, region), a default and weekday/time
windows in a time zone::

    timezone: Asia/Seoul                  # default for services that name none
    services:
      - service: api
        region: asia-northeast3
        default: {min_instances: 2, max_instances: 80}
        windows:
          - {name: morning-spike, days: mon-fri, start: "08:00", end: "09:00", min_instances: 4, max_instances: 150}

Windows are local wall-clock times (so they follow DST), ``start`` inclusive, ``end`` exclusive; an ``end``
at or before ``start`` runs past midnight. The first window that matches wins. An optional ``forecast:``
(``dbopt.cloud.forecast``) sets min instances from the traffic history passed to ``apply_scaling``;
the windows decide where that history is too short.
``desired_scaling(rules, now)`` is pure; ``apply_scaling`` reads the current settings and changes only what differs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from dbopt.cloud.forecast import Forecast, ForecastSettings, forecast_min_instances, hour_start, parse_forecast
from dbopt.targets.base import Data

if TYPE_CHECKING:
    from dbopt.cloud.cloudrun import CloudRun

log = logging.getLogger(__name__)

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_TOP_KEYS = {"timezone", "services"}
_SERVICE_KEYS = {"service", "region", "timezone", "default", "windows", "forecast"}
_WINDOW_KEYS = {"name", "days", "start", "end", "min_instances", "max_instances"}


class ScalingRulesError(ValueError):
    """The rule file is wrong; the message names the file, the field and the fix."""


class Bounds(NamedTuple):
    min_instances: int
    max_instances: int


@dataclass(frozen=True)
class Window(Data):
    name: str
    days: tuple[int, ...]  # 0 = Monday, as datetime.weekday()
    start_minute: int  # minutes after local midnight, inclusive
    end_minute: int  # exclusive; at or before start = runs past midnight into the next day
    bounds: Bounds

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start_minute < self.end_minute:
            return day in self.days and self.start_minute <= minute < self.end_minute
        # Past midnight: the evening part belongs to the listed day, the early hours to the day after it.
        return (day in self.days and minute >= self.start_minute) or (
            (day - 1) % 7 in self.days and minute < self.end_minute
        )


@dataclass(frozen=True)
class ServiceRule(Data):
    service: str
    region: str
    timezone: str
    default: Bounds
    windows: tuple[Window, ...]
    forecast: ForecastSettings | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.region)

    def window_at(self, now: datetime) -> Window | None:
        if now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
        local = now.astimezone(ZoneInfo(self.timezone))
        return next((w for w in self.windows if w.contains(local)), None)

    def bounds_at(self, now: datetime) -> Bounds:
        window = self.window_at(now)
        return window.bounds if window else self.default


@dataclass(frozen=True)
class ScalingRules(Data):
    source: str
    rules: tuple[ServiceRule, ...]


@dataclass(frozen=True)
class ScalingChange(Data):
    service: str
    region: str
    window: str  # the matching window's name, or "default"
    local_time: str
    before: Bounds
    after: Bounds
    applied: bool  # False in a dry run

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(before=self.before._asdict(), after=self.after._asdict())
        return data


def desired_scaling(rules: ScalingRules, now: datetime) -> dict[tuple[str, str], Bounds]:
    """``{(service, region): (min, max)}`` the rules ask for at ``now`` (timezone-aware)."""
    return {rule.key: rule.bounds_at(now) for rule in rules.rules}


def rule_forecast(rule: ServiceRule, now: datetime, history: Mapping[int, float]) -> Forecast | None:
    """The traffic forecast for the hour starting at or before ``now``; None when the rule has no ``forecast``."""
    if rule.forecast is None:
        return None
    result = forecast_min_instances(
        history,
        hour_start(now.timestamp()),
        rule.forecast,
        timezone=rule.timezone,
        floor=rule.default.min_instances,
        ceiling=rule.bounds_at(now).max_instances,
    )
    log.info("%s/%s forecast: %s", rule.region, rule.service, result.reason)
    return result


def forecast_bounds(rule: ServiceRule, now: datetime, history: Mapping[int, float]) -> Bounds | None:
    """The rule's bounds with min instances from the traffic forecast, or None (no forecast / short history)."""
    return _with_forecast(rule.bounds_at(now), rule_forecast(rule, now, history))


def _with_forecast(fixed: Bounds, forecast: Forecast | None) -> Bounds | None:
    if forecast is None or forecast.min_instances is None:
        return None
    return Bounds(forecast.min_instances, max(fixed.max_instances, forecast.min_instances))


@dataclass(frozen=True)
class NextHour(Data):
    """What one rule asks for an hour, with its inputs: the fixed window and, where set, the forecast."""

    service: str
    region: str
    local_time: str
    window: str  # the fixed window in force, or "default"
    fixed: dict[str, int]
    forecast: dict[str, Any] | None  # dbopt.cloud.forecast.Forecast, None without a forecast block
    settings: dict[str, Any] | None  # the rule's ForecastSettings
    history_hours: int  # hours of traffic history read for it
    chosen: str  # "forecast" or the fixed window's name
    bounds: dict[str, int]


def next_hour(rule: ServiceRule, start: datetime, history: Mapping[int, float]) -> NextHour:
    """The bounds ``apply_scaling`` would set at ``start`` (the forecast where it has history), and why."""
    window = rule.window_at(start)
    name, fixed = (window.name, window.bounds) if window else ("default", rule.default)
    forecast = rule_forecast(rule, start, history)
    chosen = _with_forecast(fixed, forecast)
    return NextHour(
        rule.service,
        rule.region,
        start.astimezone(ZoneInfo(rule.timezone)).strftime("%a %Y-%m-%d %H:%M %Z"),
        name,
        fixed._asdict(),
        forecast.to_dict() if forecast else None,
        rule.forecast.to_dict() if rule.forecast else None,
        len(history),
        "forecast" if chosen else name,
        (chosen or fixed)._asdict(),
    )


def apply_scaling(
    run: CloudRun,
    rules: ScalingRules,
    now: datetime,
    *,
    dry_run: bool = False,
    history: Mapping[tuple[str, str], Mapping[int, float]] | None = None,
) -> list[ScalingChange]:
    """Bring every service to its desired min/max; services already there are not touched.

    ``history``: per (service, region), hourly peak concurrency for rules with a ``forecast``.
    """
    changes = []
    for rule in rules.rules:
        window = rule.window_at(now)
        name, want = (window.name, window.bounds) if window else ("default", rule.default)
        if (forecast := forecast_bounds(rule, now, (history or {}).get(rule.key, {}))) is not None:
            name, want = "forecast", forecast
        state = run.describe(rule.service, rule.region)
        have = Bounds(state.min_instances, state.max_instances)
        local = now.astimezone(ZoneInfo(rule.timezone)).strftime("%a %H:%M %Z")
        if have == want:
            log.info("%s/%s at %s: min=%d max=%d already in place", rule.region, rule.service, local, *want)
            continue
        if not dry_run:
            run.set_scaling(rule.service, rule.region, *want)
        change = ScalingChange(rule.service, rule.region, name, local, have, want, not dry_run)
        log.info(
            "%s%s/%s at %s (%s): min %d -> %d, max %d -> %d",
            "[dry run] " if dry_run else "",
            rule.region,
            rule.service,
            local,
            change.window,
            have.min_instances,
            want.min_instances,
            have.max_instances,
            want.max_instances,
        )
        changes.append(change)
    return changes


def load_rules(path: str | Path) -> ScalingRules:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise ScalingRulesError(f"{path}: file not found; point rules_file at a scaling rules YAML") from err
    except yaml.YAMLError as err:
        raise ScalingRulesError(f"{path}: not valid YAML ({err}); fix the syntax") from err
    return parse_rules(data, source=str(path))


def parse_rules(data: Any, *, source: str) -> ScalingRules:
    top = _mapping(data, source, "(top level)", _TOP_KEYS)
    default_tz = _timezone(top.get("timezone"), source, "timezone") if "timezone" in top else None
    services = top.get("services")
    if not isinstance(services, list) or not services:
        raise ScalingRulesError(f"{source}: services: must be a non-empty list of service rules")
    rules = [_service_rule(item, source, f"services[{i}]", default_tz) for i, item in enumerate(services)]
    seen: dict[tuple[str, str], int] = {}
    for i, rule in enumerate(rules):
        if rule.key in seen:
            raise ScalingRulesError(
                f"{source}: services[{i}]: {rule.service} in {rule.region} already has a rule "
                f"(services[{seen[rule.key]}]); merge their windows into one entry"
            )
        seen[rule.key] = i
    return ScalingRules(source, tuple(rules))


def _service_rule(item: Any, source: str, where: str, default_tz: str | None) -> ServiceRule:
    entry = _mapping(item, source, where, _SERVICE_KEYS)
    service = _name(entry.get("service"), source, f"{where}.service")
    region = _name(entry.get("region"), source, f"{where}.region")
    if "timezone" in entry:
        tz = _timezone(entry["timezone"], source, f"{where}.timezone")
    elif default_tz:
        tz = default_tz
    else:
        raise ScalingRulesError(f"{source}: {where}.timezone: missing; set it here or a top-level timezone")
    default = _bounds(
        _mapping(entry.get("default"), source, f"{where}.default", {"min_instances", "max_instances"}),
        source,
        f"{where}.default",
    )
    windows = entry.get("windows", [])
    if not isinstance(windows, list):
        raise ScalingRulesError(f"{source}: {where}.windows: must be a list of windows")
    try:
        forecast = parse_forecast(entry["forecast"], f"{where}.forecast") if "forecast" in entry else None
    except ValueError as err:
        raise ScalingRulesError(f"{source}: {err}") from err
    return ServiceRule(
        service,
        region,
        tz,
        default,
        tuple(_window(w, source, f"{where}.windows[{i}]") for i, w in enumerate(windows)),
        forecast,
    )


def _window(item: Any, source: str, where: str) -> Window:
    entry = _mapping(item, source, where, _WINDOW_KEYS)
    name = _name(entry.get("name"), source, f"{where}.name")
    start = _minute(entry.get("start"), source, f"{where}.start", allow_24=False)
    end = _minute(entry.get("end"), source, f"{where}.end", allow_24=True)
    if start == end % 1440:
        raise ScalingRulesError(f"{source}: {where}: start and end are both {entry['start']}; a window needs a length")
    return Window(name, _days(entry.get("days"), source, f"{where}.days"), start, end, _bounds(entry, source, where))


def _mapping(value: Any, source: str, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScalingRulesError(f"{source}: {where}: expected a mapping with keys {sorted(allowed)}")
    unknown = set(value) - allowed
    if unknown:
        raise ScalingRulesError(f"{source}: {where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return value


def _name(value: Any, source: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScalingRulesError(f"{source}: {where}: missing or not a string")
    return value


def _timezone(value: Any, source: str, where: str) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ScalingRulesError(
            f"{source}: {where}: unknown time zone {value!r}; use an IANA name such as Asia/Seoul"
        ) from err
    return str(value)


def _bounds(entry: Mapping[str, Any], source: str, where: str) -> Bounds:
    low, high = entry.get("min_instances"), entry.get("max_instances")
    for field, value in (("min_instances", low), ("max_instances", high)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ScalingRulesError(f"{source}: {where}.{field}: must be a whole number >= 0, got {value!r}")
    if high < 1 or low > high:
        raise ScalingRulesError(
            f"{source}: {where}: need min_instances <= max_instances and max_instances >= 1, got {low} and {high}"
        )
    return Bounds(low, high)


def _minute(value: Any, source: str, where: str, *, allow_24: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        # PyYAML reads an unquoted 12:30 as the base-60 number 750.
        raise ScalingRulesError(f'{source}: {where}: got the number {value}; quote times, e.g. "12:30"')
    match = _TIME.match(value) if isinstance(value, str) else None
    hour, minute = (int(match[1]), int(match[2])) if match else (-1, -1)
    total = hour * 60 + minute
    if not match or minute > 59 or not (0 <= total < 1440 or (allow_24 and total == 1440)):
        limit = "24:00" if allow_24 else "23:59"
        raise ScalingRulesError(f'{source}: {where}: {value!r} is not a time; use "HH:MM" from 00:00 to {limit}')
    return total


def _days(value: Any, source: str, where: str) -> tuple[int, ...]:
    """``mon-fri``, ``[sat, sun]``, ``daily`` or absent (every day)."""
    if value is None or value == "daily":
        return tuple(range(7))
    parts = value if isinstance(value, list) else [value]
    days: set[int] = set()
    for part in parts:
        names = str(part).strip().lower().split("-")
        if len(names) > 2 or any(n not in DAY_NAMES for n in names):
            raise ScalingRulesError(
                f"{source}: {where}: {part!r} is not a day; use mon..sun, a range like mon-fri, a list, or daily"
            )
        first, last = DAY_NAMES.index(names[0]), DAY_NAMES.index(names[-1])
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return tuple(sorted(days))
