"""Scaling learned from traffic: the forecast, the rule field, and apply_scaling on the Cloud Run stand-in."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dbopt.cloud.cloudrun import CloudRun
from dbopt.cloud.forecast import (
    ForecastSettings,
    forecast_min_instances,
    history_from_matrix,
    hour_start,
    parse_forecast,
    same_hour_weeks_ago,
)
from dbopt.cloud.forecast_history import fetch_history
from dbopt.cloud.gcp import GcpSettings
from dbopt.cloud.scaling import ScalingRulesError, apply_scaling, parse_rules
from dbopt.cloud.standin import StandIn
from tests.metrics_fixtures import prometheus

ROOT = Path(__file__).resolve().parents[1]
CHICAGO = "America/Chicago"
WEEK = 7 * 24 * 3600
SETTINGS = ForecastSettings(container_concurrency=80, headroom=1.2, weeks=4, min_weeks=2)
RULES = {
    "services": [
        {
            "service": "ion-api",
            "region": "us-central1",
            "timezone": CHICAGO,
            "default": {"min_instances": 2, "max_instances": 80},
            "windows": [
                {"name": "morning", "start": "08:00", "end": "09:00", "min_instances": 4, "max_instances": 150}
            ],
            "forecast": {"container_concurrency": 80, "headroom": 1.2, "weeks": 4, "min_weeks": 2},
        }
    ]
}
KEY = ("ion-api", "us-central1")


def _hour(*args: int) -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(CHICAGO)).timestamp())


def _weeks_of(start: int, peaks: list[float], *, last_hour: float | None = None) -> dict[int, float]:
    """Peaks for the same hour 1..n weeks before ``start`` (and optionally the hour just before it)."""
    history = {h: p for h, p in zip(same_hour_weeks_ago(start, len(peaks), CHICAGO), peaks, strict=True)}
    if last_hour is not None:
        history[start - 3600] = last_hour
        for h, p in zip(same_hour_weeks_ago(start - 3600, len(peaks), CHICAGO), peaks, strict=True):
            history[h] = p
    return history


def test_min_instances_from_the_same_hour_in_past_weeks() -> None:
    start = _hour(2026, 4, 21, 8)
    result = forecast_min_instances(_weeks_of(start, [200, 210, 190, 600]), start, SETTINGS, timezone=CHICAGO,
                                    floor=2, ceiling=150)  # fmt: skip
    # q0.75 of [190, 200, 210, 600] = 307.5 (one spike week moves it, but does not set it)
    assert result.peak == pytest.approx(307.5)
    assert result.min_instances == 5  # ceil(307.5 / 80 * 1.2) = ceil(4.61)
    assert result.weeks_seen == 4


def test_the_last_hour_scales_the_seasonal_value_within_limits() -> None:
    start = _hour(2026, 4, 21, 9)
    quiet = forecast_min_instances(_weeks_of(start, [200] * 4, last_hour=100), start, SETTINGS, timezone=CHICAGO,
                                   floor=1, ceiling=150)  # fmt: skip
    assert quiet.peak == pytest.approx(100)  # a holiday: half the usual traffic an hour ago
    surge = forecast_min_instances(_weeks_of(start, [200] * 4, last_hour=2000), start, SETTINGS, timezone=CHICAGO,
                                   floor=1, ceiling=150)  # fmt: skip
    assert surge.peak == pytest.approx(400)  # clamped at x2
    assert surge.min_instances == 6


def test_bounded_by_floor_and_ceiling_and_settings_win() -> None:
    start = _hour(2026, 4, 21, 3)
    night = _weeks_of(start, [10] * 4)
    assert forecast_min_instances(night, start, SETTINGS, timezone=CHICAGO, floor=2, ceiling=80).min_instances == 2
    busy = _weeks_of(start, [5000] * 4)
    assert forecast_min_instances(busy, start, SETTINGS, timezone=CHICAGO, floor=2, ceiling=60).min_instances == 60
    capped = ForecastSettings(80, ceiling=20, floor=0)
    assert forecast_min_instances(busy, start, capped, timezone=CHICAGO, floor=2, ceiling=60).min_instances == 20
    assert forecast_min_instances(night, start, capped, timezone=CHICAGO, floor=2, ceiling=60).min_instances == 1


def test_short_history_falls_back_to_the_fixed_windows() -> None:
    start = _hour(2026, 4, 21, 8)
    result = forecast_min_instances(_weeks_of(start, [300]), start, SETTINGS, timezone=CHICAGO, floor=2, ceiling=80)
    assert result.min_instances is None and result.peak is None
    assert result.reason == "fixed windows: 1 of 2 weeks of history"


def test_weeks_ago_follow_local_time_across_dst() -> None:
    # Tuesday 10 March 2026 08:00 CDT; a week earlier the same wall-clock hour was CST: one hour less apart.
    start = _hour(2026, 3, 10, 8)
    week_ago = same_hour_weeks_ago(start, 1, CHICAGO)[0]
    assert datetime.fromtimestamp(week_ago, ZoneInfo(CHICAGO)).strftime("%a %H:%M %Z") == "Tue 08:00 CST"
    assert start - week_ago == WEEK - 3600


def test_prometheus_matrix_to_hour_starts() -> None:
    end = _hour(2026, 4, 21, 9)
    assert history_from_matrix([[end, "123.5"], [end + 3600, "NaN"]]) == {end - 3600: 123.5}


@pytest.mark.parametrize(
    ("forecast", "message"),
    [
        ({"headroom": 1.2}, "services[0].forecast.container_concurrency: must be a whole number >= 1, got None"),
        ({"container_concurrency": 80, "lookback": 4}, "services[0].forecast: unknown key(s) ['lookback']"),
        ({"container_concurrency": 80, "headroom": 0.5}, "forecast.headroom: must be a number from 1.0 to 5.0"),
        ({"container_concurrency": 80, "weeks": 2, "min_weeks": 3}, "min_weeks: 3 exceeds weeks 2; lower it"),
        ({"container_concurrency": 80, "floor": 9, "ceiling": 3}, "floor 9 exceeds ceiling 3; swap them"),
    ],
)
def test_rule_field_errors_name_file_field_and_fix(forecast: dict, message: str) -> None:
    data = copy.deepcopy(RULES)
    data["services"][0]["forecast"] = forecast
    with pytest.raises(ScalingRulesError) as err:
        parse_rules(data, source="rules.yaml")
    assert str(err.value).startswith("rules.yaml: ") and message in str(err.value)


def test_parse_forecast_defaults() -> None:
    assert parse_forecast({"container_concurrency": 40}, "f") == ForecastSettings(40, 1.2, 4, 2, 0.75, None, None)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with StandIn(lro_polls=1) as server:
        server.run.seed("ion-mentoring", "us-central1", "ion-api", min_instances=2, max_instances=80)
        yield server


def test_apply_scaling_uses_the_forecast_and_falls_back_without_history(stand_in: StandIn) -> None:
    run = CloudRun.connect(GcpSettings.from_extra(stand_in.extra("ion-mentoring"), source="test"), poll_s=0.01)
    rules = parse_rules(RULES, source="rules.yaml")
    ten = datetime(2026, 4, 21, 10, tzinfo=ZoneInfo(CHICAGO))
    start = int(ten.timestamp())
    history = {KEY: _weeks_of(start, [400, 420, 380, 410])}

    [change] = apply_scaling(run, rules, ten.astimezone(UTC), history=history)
    assert (change.window, change.after.min_instances, change.after.max_instances) == ("forecast", 7, 80)
    assert stand_in.run.services["projects/ion-mentoring/locations/us-central1/services/ion-api"]["scaling"] == {
        "minInstanceCount": 7,
        "maxInstanceCount": 80,
    }
    # No history for the next hour: the fixed windows decide (default 2/80 at 11:00).
    [back] = apply_scaling(run, rules, ten + timedelta(hours=1))
    assert (back.window, back.after.min_instances) == ("default", 2)


def test_backtest_forecast_beats_fixed_windows_on_cold_starts() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from scaling_backtest import run as backtest

    scores = {s.strategy.split(" ")[0]: s for s in backtest(6, 17, 4, SETTINGS, "ion-api", "us-central1")}
    assert scores["forecast"].cold_minutes < scores["fixed"].cold_minutes / 3
    assert scores["forecast"].cold_minutes < scores["reactive"].cold_minutes


@pytest.fixture
def backfilled_prometheus(tmp_path: Path) -> Iterator[tuple[str, float]]:
    """A real Prometheus over two weeks of backfilled traffic (promtool), without scraping anything.

    ``http_request_duration_seconds_sum`` grows at (100 + 10 × hour of day) request-seconds per second, so
    the peak concurrency of each hour is that number. Yields (URL, the end of the data).
    """
    end = float(hour_start(time.time()))
    start = end - 2 * WEEK - 2 * 3600
    lines, total, t = ["# TYPE http_request_duration_seconds_sum gauge"], 0.0, start
    labels = '{service="ion-api",region="us-central1"}'
    while t <= end - 20:
        total += 20 * (100 + 10 * datetime.fromtimestamp(t, UTC).hour)
        t += 20
        lines.append(f"http_request_duration_seconds_sum{labels} {total} {int(t)}")
    (tmp_path / "trace.om").write_text("\n".join([*lines, "# EOF", ""]))
    data = tmp_path / "data"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "trace.om"), str(data)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
    with prometheus(config=tmp_path / "prometheus.yml", data=data, retention="60d") as url:
        yield url, end


def test_history_from_a_real_prometheus_drives_the_forecast(backfilled_prometheus: tuple[str, float]) -> None:
    url, end = backfilled_prometheus
    data = copy.deepcopy(RULES)
    data["services"][0]["forecast"]["weeks"] = 2
    rules = parse_rules(data, source="rules.yaml")
    history = fetch_history(url, rules, end)[KEY]
    assert len(history) >= 2 * 7 * 24  # every hour of two weeks
    for hour, peak in history.items():
        assert peak == pytest.approx(100 + 10 * datetime.fromtimestamp(hour, UTC).hour, rel=0.01)
    # The hour starting at ``end``: the same hour one and two weeks ago, at the usual level.
    settings = rules.rules[0].forecast
    result = forecast_min_instances(history, int(end), settings, timezone=CHICAGO, floor=2, ceiling=80)
    expected_peak = 100 + 10 * datetime.fromtimestamp(end, UTC).hour
    assert result.weeks_seen == 2 and result.peak == pytest.approx(expected_peak, rel=0.01)
    assert result.min_instances == max(2, math.ceil(expected_peak / 80 * 1.2 - 1e-6))


def test_plan_scaling_section_names_an_existing_rules_file() -> None:
    from dbopt.plan import PlanError, parse_plan

    base = "id: s\ntargets: [{name: db, conn_id: c, dialect: sqlite}]\nscaling: {rules_file: %s}\n"
    assert parse_plan(base % "include/scaling/rules.yaml").scaling.rules_path().is_file()
    with pytest.raises(PlanError, match=r"scaling.*rules_file 'include/scaling/nope.yaml': no such file"):
        parse_plan(base % "include/scaling/nope.yaml", "week.yaml")
