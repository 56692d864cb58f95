"""Predictive Cloud Run scaling: rule file, pure evaluator (time zones, DST), apply, and the hourly DAG.

The DAG runs through ``airflow dags test`` in a subprocess with its own migrated metadata DB
(a session fixture below), talking to the stand-in served from this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from dbopt.cloud.cloudrun import CloudRun
from dbopt.cloud.gcp import GcpSettings
from dbopt.cloud.scaling import (
    Bounds,
    ScalingRulesError,
    apply_scaling,
    desired_scaling,
    load_rules,
    parse_rules,
)
from dbopt.cloud.standin import StandIn
from tests.prometheus_standin import RevisionPrometheus

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "include" / "scaling" / "rules.yaml"
SEOUL = ZoneInfo("Asia/Seoul")
PROJECT = "ion-mentoring"

# The seed plan's table (week 17, day 2, step 2.3), on weekdays, in the plan's time zone.
PLAN = {
    "timezone": "Asia/Seoul",
    "services": [
        {
            "service": "ion-api",
            "region": "asia-northeast3",
            "default": {"min_instances": 2, "max_instances": 80},
            "windows": [
                {
                    "name": "morning",
                    "days": "mon-fri",
                    "start": "08:00",
                    "end": "09:00",
                    "min_instances": 4,
                    "max_instances": 150,
                },
                {
                    "name": "lunch",
                    "days": "mon-fri",
                    "start": "12:00",
                    "end": "13:00",
                    "min_instances": 4,
                    "max_instances": 150,
                },
                {
                    "name": "evening",
                    "days": "mon-fri",
                    "start": "17:00",
                    "end": "18:00",
                    "min_instances": 3,
                    "max_instances": 120,
                },
                {
                    "name": "batch",
                    "days": ["fri"],
                    "start": "22:00",
                    "end": "02:00",
                    "min_instances": 3,
                    "max_instances": 90,
                },
            ],
        }
    ],
}
KEY = ("ion-api", "asia-northeast3")


def _at(rules_data: dict, moment: datetime) -> Bounds:
    return desired_scaling(parse_rules(rules_data, source="plan.yaml"), moment)[KEY]


def test_evaluator_follows_the_plan_in_seoul_time() -> None:
    tuesday = datetime(2026, 4, 21, tzinfo=SEOUL)  # a Tuesday
    assert _at(PLAN, tuesday.replace(hour=8, minute=30)) == Bounds(4, 150)
    assert _at(PLAN, tuesday.replace(hour=23)) == Bounds(2, 80)
    assert _at(PLAN, tuesday.replace(hour=9)) == Bounds(2, 80)  # end is exclusive
    assert _at(PLAN, tuesday.replace(hour=17, minute=59)) == (3, 120)  # Bounds is a (min, max) tuple
    # The same instant given in UTC: 23:30 UTC Monday is 08:30 Tuesday in Seoul.
    assert _at(PLAN, datetime(2026, 4, 20, 23, 30, tzinfo=UTC)) == Bounds(4, 150)
    saturday = datetime(2026, 4, 25, 8, 30, tzinfo=SEOUL)
    assert _at(PLAN, saturday) == Bounds(2, 80)  # weekday windows only


def test_window_past_midnight_belongs_to_its_start_day() -> None:
    friday = datetime(2026, 4, 24, tzinfo=SEOUL)
    assert _at(PLAN, friday.replace(hour=23)) == Bounds(3, 90)
    assert _at(PLAN, friday.replace(day=25, hour=1, minute=59)) == Bounds(3, 90)  # Saturday early hours
    assert _at(PLAN, friday.replace(day=25, hour=2)) == Bounds(2, 80)
    assert _at(PLAN, friday.replace(day=23, hour=23)) == Bounds(2, 80)  # Thursday night: not listed


def test_windows_follow_daylight_saving_time() -> None:
    rules = {
        "services": [
            {
                "service": "ion-api",
                "region": "asia-northeast3",  # KEY; the zone is what matters here
                "timezone": "Europe/Brussels",
                "default": {"min_instances": 1, "max_instances": 80},
                "windows": [
                    {"name": "morning", "start": "08:00", "end": "09:00", "min_instances": 4, "max_instances": 150},
                    {"name": "night", "start": "02:00", "end": "03:00", "min_instances": 0, "max_instances": 10},
                ],
            }
        ]
    }
    # 06:30 UTC is 07:30 local before the switch (CET, Friday) and 08:30 local after it (CEST, Monday).
    assert _at(rules, datetime(2026, 3, 27, 6, 30, tzinfo=UTC)) == Bounds(1, 80)
    assert _at(rules, datetime(2026, 3, 30, 6, 30, tzinfo=UTC)) == Bounds(4, 150)
    # Spring forward (29 March 2026): 02:00-03:00 local does not exist, the hourly run never sees it ...
    assert _at(rules, datetime(2026, 3, 29, 0, 59, tzinfo=UTC)) == Bounds(1, 80)  # 01:59 CET
    assert _at(rules, datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == Bounds(1, 80)  # 03:00 CEST
    # ... fall back (25 October 2026): 02:00-03:00 local happens twice, both count.
    assert _at(rules, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == Bounds(0, 10)  # 02:30 CEST
    assert _at(rules, datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == Bounds(0, 10)  # 02:30 CET
    with pytest.raises(ValueError, match="timezone-aware"):
        _at(rules, datetime(2026, 3, 30, 8, 30))


def test_shipped_rules_file() -> None:
    rules = load_rules(RULES_FILE)
    assert [r.key for r in rules.rules] == [
        ("ion-api", "us-central1"),
        ("ion-api", "europe-west1"),
        ("ion-api", "asia-southeast1"),
    ]
    # Tuesday 08:30 in Seoul = Monday 18:30 in Chicago (CDT) = Tuesday 01:30 in Brussels (CET).
    assert desired_scaling(rules, datetime(2026, 3, 10, 8, 30, tzinfo=SEOUL)) == {
        ("ion-api", "us-central1"): Bounds(2, 80),
        ("ion-api", "europe-west1"): Bounds(1, 80),
        ("ion-api", "asia-southeast1"): Bounds(4, 150),
    }
    assert desired_scaling(rules, datetime(2026, 3, 10, 8, 30, tzinfo=ZoneInfo("America/Chicago")))[
        ("ion-api", "us-central1")
    ] == Bounds(4, 150)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["services"][0]["windows"][0].update(start=750), r"windows\[0\]\.start: got the number 750; quote"),
        (lambda d: d["services"][0]["windows"][0].update(end="25:00"), r"windows\[0\]\.end: '25:00' is not a time"),
        (lambda d: d.update(timezone="Asia/Sole"), r"timezone: unknown time zone 'Asia/Sole'; use an IANA name"),
        (lambda d: d["services"][0]["default"].update(min_instances=90), r"default: need min_instances <= max"),
        (lambda d: d["services"][0]["windows"][1].update(days="mon-fry"), r"windows\[1\]\.days: 'mon-fry' is not"),
        (lambda d: d["services"][0].update(max_instances=3), r"services\[0\]: unknown key\(s\) \['max_instances'\]"),
        (lambda d: d["services"].append(dict(d["services"][0])), r"services\[1\]: ion-api in asia-northeast3 alre"),
        (lambda d: d.pop("timezone"), r"services\[0\]\.timezone: missing; set it here or a top-level timezone"),
    ],
)
def test_rule_file_errors_name_file_field_and_fix(tmp_path: Path, edit, message: str) -> None:
    data = json.loads(json.dumps(PLAN))
    edit(data)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScalingRulesError, match=f"^{path}: .*{message}"):
        load_rules(path)


def test_unquoted_time_in_yaml_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    text = yaml.safe_dump(PLAN).replace("'12:00'", "12:00")
    assert "start: 12:00" in text
    path.write_text(text)
    with pytest.raises(ScalingRulesError, match=r"windows\[1\]\.start: got the number 720; quote times"):
        load_rules(path)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with StandIn(lro_polls=1) as server:
        server.run.seed(PROJECT, "asia-northeast3", "ion-api", min_instances=2, max_instances=80)
        yield server


def test_apply_changes_only_what_differs(stand_in: StandIn) -> None:
    run = CloudRun.connect(GcpSettings.from_extra(stand_in.extra(PROJECT), source="test"), poll_s=0.01)
    rules = parse_rules(PLAN, source="plan.yaml")
    morning = datetime(2026, 4, 21, 8, 0, tzinfo=SEOUL)
    path = f"projects/{PROJECT}/locations/asia-northeast3/services/ion-api"

    planned = apply_scaling(run, rules, morning, dry_run=True)
    assert [c.to_dict() for c in planned] == [
        {
            "service": "ion-api",
            "region": "asia-northeast3",
            "window": "morning",
            "local_time": "Tue 08:00 KST",
            "before": {"min_instances": 2, "max_instances": 80},
            "after": {"min_instances": 4, "max_instances": 150},
            "applied": False,
        }
    ]
    assert stand_in.run.updates == []  # dry run: nothing sent

    applied = apply_scaling(run, rules, morning)
    assert [c.applied for c in applied] == [True]
    assert stand_in.run.services[path]["scaling"] == {"minInstanceCount": 4, "maxInstanceCount": 150}
    assert apply_scaling(run, rules, morning.replace(minute=45)) == []  # same hour again: no change
    assert stand_in.run.updates == [(path, ["scaling"])]
    assert apply_scaling(run, rules, morning.replace(hour=9))[0].after == Bounds(2, 80)


# -- the DAG, end to end through `airflow dags test` ----------------------------------------------


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private AIRFLOW_HOME with a migrated SQLite metadata DB.

    ``dbopt`` comes from PYTHONPATH; the plugins folder is an empty one because Airflow's plugin loader
    imports every ``*.py`` under it by file stem, so a package's ``__main__.py`` would run as ``__main__``.
    """
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path_factory.mktemp("no_plugins")),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}",
    }
    migrate = subprocess.run(
        [_airflow(), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    return env


def _airflow() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def _dags_test(env: dict[str, str], logical_date: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_airflow(), "dags", "test", "dbopt_scaling", logical_date, "-f", str(ROOT / "dags" / "dbopt_scaling.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0 and "state=success" in result.stdout + result.stderr, (
        result.stdout[-4000:] + result.stderr[-4000:]
    )
    return result


@pytest.mark.airflow
def test_dag_applies_the_rule_and_a_second_run_in_the_hour_changes_nothing(airflow_env: dict[str, str]) -> None:
    # the shipped rules forecast: a Prometheus with four hours of traffic is too little history, the windows decide
    with StandIn(lro_polls=1) as stand_in, RevisionPrometheus(lambda _: 100.0) as prometheus:
        for region in ("us-central1", "europe-west1", "asia-southeast1"):
            stand_in.run.seed(PROJECT, region, "ion-api", min_instances=2, max_instances=80)
        conn = {"conn_type": "google_cloud_platform", "extra": stand_in.extra(PROJECT)}
        env = {**airflow_env, "AIRFLOW_CONN_GOOGLE_CLOUD_RUN": json.dumps(conn),
               "AIRFLOW_CONN_PROMETHEUS_DEFAULT": json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                              "port": prometheus.port})}  # fmt: skip

        first = _dags_test(env, "2026-03-10T08:00:00+09:00")  # Tuesday 08:00 in Seoul
        scaling = {path.split("/")[3]: svc.get("scaling") for path, svc in stand_in.run.services.items()}
        assert scaling == {
            "us-central1": {"minInstanceCount": 2, "maxInstanceCount": 80},  # Monday 18:00 in Chicago: off-peak
            "europe-west1": {"minInstanceCount": 1, "maxInstanceCount": 80},  # 00:00 in Brussels: EU off-peak
            "asia-southeast1": {"minInstanceCount": 4, "maxInstanceCount": 150},  # the morning spike
        }
        assert len(stand_in.run.updates) == 2
        assert "morning-spike): min 2 -> 4, max 80 -> 150" in first.stdout + first.stderr

        second = _dags_test(env, "2026-03-10T08:30:00+09:00")
        assert len(stand_in.run.updates) == 2  # nothing sent
        assert "already in place" in second.stdout + second.stderr
