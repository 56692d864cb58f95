"""A weekly run deploying one change to three regions, where only one region's canary is bad: that region
rolls back, the others promote, and the run record holds each region's evidence.

Cloud Run is the stand-in (through Google's client); the metrics come from a small Prometheus HTTP API
stand-in that answers per revision label, bad for the revision deployed in europe-west1. A revision's name
includes its region, so the three canaries are three label values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from dbopt.cloud.standin import StandIn
from tests.dag_runs import canary_connections, canary_plan, run_plan, states
from tests.prometheus_standin import RevisionPrometheus

pytestmark = pytest.mark.airflow
PROJECT, SERVICE, BAD = "demo-project", "api", "europe-west1"
REGIONS = ("us-central1", BAD, "asia-east1")


def _path(region: str) -> str:
    return f"projects/{PROJECT}/locations/{region}/services/{SERVICE}"


@pytest.fixture
def clouds(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StandIn, RevisionPrometheus]]:
    with StandIn() as standin:
        for region in REGIONS:
            standin.run.seed(PROJECT, region, SERVICE)

        def error_ratio(revision: str) -> float:
            deployed_in_bad_region = revision in standin.run.revisions[_path(BAD)] and "-00001-" not in revision
            return 0.3 if deployed_in_bad_region else 0.0

        with RevisionPrometheus(error_ratio) as prometheus:
            canary_connections(monkeypatch, "t_regions", standin.extra(PROJECT), prometheus.port)
            yield standin, prometheus


def _plan(deploy_extra: str) -> str:
    return canary_plan("t_regions", PROJECT, [(SERVICE, r) for r in REGIONS], deploy_extra)


def _report(tmp_path) -> str:
    (path,) = (tmp_path / "reports").glob("t_regions/*/report.md")
    return path.read_text()


def _section(report: str, region: str) -> str:
    """The report's canary section of one region (up to the next region's heading)."""
    start = report.index(f"### {SERVICE} in {region}")
    end = report.find("\n### ", start + 1)
    return report[start : end if end > 0 else None]


def _rolled_back(standin: StandIn, region: str) -> bool:
    return standin.run.services[_path(region)]["traffic"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": f"{SERVICE}-00001-abc", "percent": 100}
    ]


def test_only_the_bad_regions_canary_rolls_back(pg_url, clouds, tmp_path, monkeypatch) -> None:
    standin, prometheus = clouds
    run, record = run_plan(_plan("canary_percent: 10"), pg_url, tmp_path, monkeypatch)
    st, report = states(run), _report(tmp_path)
    for region in REGIONS:
        group = f"canary_{SERVICE}_{region}".replace("-", "_")
        traffic = standin.run.services[_path(region)]["traffic"]
        canary = record["canaries"][f"{SERVICE}/{region}"]
        section = _section(report, region)
        new = canary["deploy"]["new_revision"]
        # the region's evidence in the report: revisions, its one traffic step, the rule with its query
        assert f"Revisions: old `{SERVICE}-00001-abc`, new `{new}`" in section
        assert f"`{new}` (canary) 1000 in 60 s" in section and f'revision="{new}"' in section
        if region == BAD:
            assert st[f"{group}.rollback"] == "success" and st[f"{group}.promote"] == "skipped", st
            assert _rolled_back(standin, region)
            assert canary["monitor"]["decision"] == "rollback"
            assert "error_ratio" in json.dumps(canary["monitor"])  # the rule and its evidence
            assert "#### Step 1 (10%): rollback" in section and "| 0.3 | 0.05 | fail |" in section
        else:
            assert st[f"{group}.promote"] == "success" and st[f"{group}.rollback"] == "skipped", st
            assert traffic == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
            assert canary["monitor"]["decision"] == "promote"
            assert "#### Step 1 (10%): promote" in section and "| 0 | 0.05 | pass |" in section
    deployed = {record["canaries"][f"{SERVICE}/{r}"]["deploy"]["new_revision"] for r in REGIONS}
    assert len(deployed) == 3  # one revision name per region: the metrics cannot mix them
    assert all(any(f'revision="{rev}"' in q for q in prometheus.queries) for rev in deployed)


def test_rollback_all_rolls_every_region_back_when_one_fails(pg_url, clouds, tmp_path, monkeypatch) -> None:
    """deploy.on_region_failure: rollback_all, with a stepped canary: the good regions pass every step, the
    bad one fails its first, and every region goes back to its old revision; the report says why."""
    standin, _ = clouds
    run, record = run_plan(_plan("steps: [10, 25]\non_region_failure: rollback_all"), pg_url, tmp_path, monkeypatch)
    st, report = states(run), _report(tmp_path)
    for region in REGIONS:
        group = f"canary_{SERVICE}_{region}".replace("-", "_")
        assert st[f"{group}.rollback"] == "success" and st[f"{group}.promote"] == "skipped", st
        assert _rolled_back(standin, region)
        monitor, section = record["canaries"][f"{SERVICE}/{region}"]["monitor"], _section(report, region)
        if region == BAD:
            assert [(s["percent"], s["decision"]) for s in monitor["steps"]] == [(10, "rollback")]
            assert "rolled back with every region" not in section
        else:
            assert [(s["percent"], s["decision"]) for s in monitor["steps"]] == [(10, "promote"), (25, "promote")]
            why = f"rolled back with every region (deploy.on_region_failure: rollback_all) because {SERVICE}/{BAD}"
            assert f"{why}: rollback" in section
