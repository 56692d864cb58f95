"""The stand-ins answer in the shapes Google documents: every field and enum value they send exists in the
discovery documents shipped with google-api-python-client (run v2, sqladmin v1, monitoring v3).

The stand-ins are ours, so they cannot be the judge of the API; these documents are Google's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import googleapiclient
import httplib2
import pytest
import requests
from googleapiclient.discovery import build

from dbopt.cloud.standin import StandIn
from dbopt.metrics.monitoring_standin import MonitoringStandIn, Request

DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
PROJECT, REGION, SERVICE, INSTANCE = "p", "europe-west1", "api", "db"


def _doc(name: str) -> dict[str, Any]:
    return json.loads((DOCS / f"{name}.json").read_text())


def _problems(value: Any, schema: dict[str, Any], doc: dict[str, Any], path: str) -> list[str]:
    """Fields the schema does not have, enum values it does not list, and type mismatches, by path."""
    if "$ref" in schema:
        schema = doc["schemas"][schema["$ref"]]
    kind = schema.get("type")
    if kind == "any" or (kind == "object" and "properties" not in schema):
        return []  # Any / free-form maps (labels, Operation.metadata …)
    if kind == "array":
        return [p for i, item in enumerate(value) for p in _problems(item, schema["items"], doc, f"{path}[{i}]")]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        out = []
        for key, item in value.items():
            if key not in schema["properties"]:
                out.append(f"{path}.{key}: not a field of the documented schema")
            else:
                out += _problems(item, schema["properties"][key], doc, f"{path}.{key}")
        return out
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    if kind == "string" and not isinstance(value, str):
        return [f"{path}: expected a string (int64 travels as text), got {value!r}"]
    return []


@pytest.fixture
def stand_in():
    with StandIn(lro_polls=1) as server:
        server.run.seed(PROJECT, REGION, SERVICE, env={"A": "1"}, max_instances=5)
        server.sql.seed(PROJECT, INSTANCE)
        yield server


def _get(url: str) -> dict[str, Any]:
    response = requests.get(url, timeout=10)
    return response.json()


def test_cloud_run_answers_match_run_v2(stand_in: StandIn) -> None:
    doc = _doc("run.v2")
    path = f"projects/{PROJECT}/locations/{REGION}/services/{SERVICE}"
    base = f"{stand_in.endpoint}/v2/{path}"
    service = _get(base)
    stand_in.run.fail_next_revision("exit(1)")
    body = {**service, "template": {**service["template"], "revision": f"{SERVICE}-bad"}}
    body["traffic"] = [*service["traffic"], {"type": 2, "revision": f"{SERVICE}-bad", "tag": "canary"}]
    operation = requests.patch(base, json=body, timeout=10).json()
    polled = [_get(f"{stand_in.endpoint}/v2/{operation['name']}") for _ in range(2)]
    answers = {
        "service": (service, "GoogleCloudRunV2Service"),
        "revision": (_get(f"{base}/revisions/{SERVICE}-bad"), "GoogleCloudRunV2Revision"),
        "operation": (operation, "GoogleLongrunningOperation"),
        "failed operation": (polled[-1], "GoogleLongrunningOperation"),
    }
    assert polled[-1]["error"]["code"] == 9 and "exit(1)" in polled[-1]["error"]["message"]
    assert [p for name, (v, s) in answers.items() for p in _problems(v, {"$ref": s}, doc, name)] == []


def test_cloud_sql_answers_match_sqladmin_v1(stand_in: StandIn) -> None:
    doc = _doc("sqladmin.v1")
    sql = build("sqladmin", "v1", http=httplib2.Http(), static_discovery=True,
                client_options={"api_endpoint": stand_in.endpoint + "/"})  # fmt: skip
    stand_in.sql.fail_next_operation("disk full")
    op = sql.backupRuns().insert(project=PROJECT, instance=INSTANCE, body={"description": "x"}).execute()
    done = [sql.operations().get(project=PROJECT, operation=op["name"]).execute() for _ in range(3)][-1]
    answers = {
        "instance": (sql.instances().get(project=PROJECT, instance=INSTANCE).execute(), "DatabaseInstance"),
        "operation": (done, "Operation"),
        "backups": (sql.backupRuns().list(project=PROJECT, instance=INSTANCE).execute(), "BackupRunsListResponse"),
        "operations": (sql.operations().list(project=PROJECT, instance=INSTANCE).execute(), "OperationsListResponse"),
    }
    assert done["error"]["errors"][0]["message"] == "disk full"
    assert [p for name, (v, s) in answers.items() for p in _problems(v, {"$ref": s}, doc, name)] == []


def test_time_series_answers_match_monitoring_v3() -> None:
    doc = _doc("monitoring.v3")
    with MonitoringStandIn(page_size=2) as monitoring:
        monitoring.record(Request(1_790_000_000 + i, "r1", 10.0 + i, "5xx" if i % 3 else "2xx") for i in range(9))
        monitoring.execution_errors = [{"code": 4, "message": "partial"}]
        answers = []
        for metric, reducer in (("request_count", "REDUCE_SUM"), ("request_latencies", "REDUCE_PERCENTILE_95")):
            params = {
                "filter": f'metric.type = "run.googleapis.com/{metric}" AND resource.labels.location = "{REGION}"',
                "interval.startTime": "2026-09-21T14:00:00Z",
                "interval.endTime": "2026-09-21T15:00:00Z",
                "aggregation.alignmentPeriod": "60s",
                "aggregation.perSeriesAligner": "ALIGN_DELTA",
                "aggregation.crossSeriesReducer": reducer,
                "aggregation.groupByFields": ["metric.labels.response_code_class"],
                "view": "FULL",
            }
            if reducer == "REDUCE_PERCENTILE_95":
                params["filter"] += ' AND metric.labels.response_code_class = "2xx"'
                del params["aggregation.groupByFields"]
            answers.append(
                requests.get(f"{monitoring.url}/v3/projects/{PROJECT}/timeSeries", params=params, timeout=10).json()
            )
        assert all(a.get("timeSeries") for a in answers) and answers[0]["executionErrors"]
        problems = [
            p for i, a in enumerate(answers) for p in _problems(a, {"$ref": "ListTimeSeriesResponse"}, doc, str(i))
        ]
        assert problems == []
