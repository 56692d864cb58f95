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
from tests.dag_runs import run_plan, states
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
            monkeypatch.setenv(
                "AIRFLOW_CONN_GOOGLE_CLOUD_RUN",
                json.dumps({"conn_type": "google_cloud_platform", "extra": standin.extra(PROJECT)}),
            )
            monkeypatch.setenv(
                "AIRFLOW_CONN_T_REGIONS_PROM",
                json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": prometheus.port}),
            )
            yield standin, prometheus


def test_only_the_bad_regions_canary_rolls_back(pg_url, clouds, tmp_path, monkeypatch) -> None:
    standin, prometheus = clouds
    services = ", ".join(f"{{name: {SERVICE}, region: {r}}}" for r in REGIONS)
    text = f"""
id: t_regions
targets: [{{name: db, conn_id: t_regions_db, dialect: postgres}}]
health_gate: {{on_missing: ignore}}
deploy:
  enabled: true
  project: {PROJECT}
  services: [{services}]
  env: {{DB_POOL_SIZE: "15"}}
  canary_percent: 10
monitor:
  duration_s: 8
  interval_s: 1
  required_passes: 2
  metrics_conn_id: t_regions_prom
  rules:
    - {{metric: error_ratio, op: ">", threshold: 0.05, scope: canary, window_s: 60, min_requests: 10}}
"""
    run, record = run_plan(text, pg_url, tmp_path, monkeypatch)
    st = states(run)
    for region in REGIONS:
        group = f"canary_{SERVICE}_{region}".replace("-", "_")
        traffic = standin.run.services[_path(region)]["traffic"]
        canary = record["canaries"][f"{SERVICE}/{region}"]
        if region == BAD:
            assert st[f"{group}.rollback"] == "success" and st[f"{group}.promote"] == "skipped", st
            assert traffic == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": f"{SERVICE}-00001-abc",
                                "percent": 100}]  # fmt: skip
            assert canary["monitor"]["decision"] == "rollback"
            assert "error_ratio" in json.dumps(canary["monitor"])  # the rule and its evidence
        else:
            assert st[f"{group}.promote"] == "success" and st[f"{group}.rollback"] == "skipped", st
            assert traffic == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
            assert canary["monitor"]["decision"] == "promote"
    deployed = {record["canaries"][f"{SERVICE}/{r}"]["deploy"]["new_revision"] for r in REGIONS}
    assert len(deployed) == 3  # one revision name per region: the metrics cannot mix them
    assert all(any(f'revision="{rev}"' in q for q in prometheus.queries) for rev in deployed)
