"""Stepped canary (deploy.steps: [10, 25, 50]): an analysis per step, promotion only after the last, rollback
from the first step that fails — Cloud Run through Google's client against the stand-in, metrics from a
Prometheus API stand-in whose figures follow the canary's current traffic share."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from airflow.sdk.exceptions import TaskDeferred

from dbopt.cloud.standin import StandIn
from dbopt.metrics.steps import check_steps, run_steps
from dbopt.operators.cloudrun import (
    CloudRunDeployRevisionOperator,
    CloudRunPromoteOperator,
    CloudRunRollbackOperator,
    CloudRunShiftTrafficOperator,
    CloudRunSteppedCanaryOperator,
)
from dbopt.report.run import write_run_report
from tests.dag_runs import canary_connections, canary_plan, run_plan, states
from tests.prometheus_standin import RevisionPrometheus

PROJECT, REGION, SERVICE = "demo-project", "us-central1", "api"
PATH = f"projects/{PROJECT}/locations/{REGION}/services/{SERVICE}"
CONN_ID = "dbopt_test_steps"
CONTEXT = {"run_id": "scheduled__2026-04-21T00:00:00+00:00"}
PLAN = {
    "rules": [{"metric": "error_ratio", "op": ">", "threshold": 0.05, "scope": "canary", "window_s": 30}],
    "interval_s": 0.2,
    "required_passes": 2,
    "failure_limit": 0,
    "deadline_s": 10,
}
SHARES_SEEN: list[int] = []  # the canary's share whenever the metrics were read (the last rollout's)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    with StandIn(lro_polls=0) as server:
        server.run.seed(PROJECT, REGION, SERVICE)
        conn = {"conn_type": "google_cloud_platform", "extra": server.extra(PROJECT)}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        yield server


def _canary_share(stand_in: StandIn, revision: str) -> int:
    return sum(t["percent"] for t in stand_in.run.services[PATH]["trafficStatuses"] if t["revision"] == revision)


def _until_decided(operator: CloudRunSteppedCanaryOperator) -> tuple[dict, int]:
    """Run the operator as Airflow does: each deferral's trigger serialized, rebuilt as the triggerer
    does, run to its event, and the operator resumed with it. Returns the outcome and the deferral count."""
    deferrals, call = 0, lambda: operator.execute(CONTEXT)
    while True:
        try:
            return call(), deferrals
        except TaskDeferred as deferred:
            deferrals += 1
            classpath, kwargs = deferred.trigger.serialize()
            json.dumps(kwargs)  # stored in the metadata database
            module, name = classpath.rsplit(".", 1)
            trigger = getattr(importlib.import_module(module), name)(**kwargs)

            async def first_event(trigger=trigger) -> dict:
                async for event in trigger.run():
                    return event.payload
                raise AssertionError("the trigger ended without an event")

            event = asyncio.run(asyncio.wait_for(first_event(), 60))
            event = json.loads(json.dumps(event))  # stored in the metadata database until the task resumes
            call = partial(getattr(operator, deferred.method_name), CONTEXT, event=event, **(deferred.kwargs or {}))


def _rollout(
    stand_in: StandIn, failing_from: int | None, *, deferrable: bool = False, share_before: int = 0
) -> tuple[dict, dict]:
    """Deploy, then the stepped operator; the canary's errors start once it gets ``failing_from`` percent.
    ``share_before``: the canary's share when the operator starts (what an interrupted earlier try left)."""
    deployment = CloudRunDeployRevisionOperator(
        task_id="deploy", gcp_conn_id=CONN_ID, service=SERVICE, region=REGION, env={"DB_POOL_SIZE": "1"}, poll_s=0.01
    ).execute(CONTEXT)
    new = deployment["new_revision"]
    if share_before:
        CloudRunShiftTrafficOperator(task_id="shift", gcp_conn_id=CONN_ID, deployment=deployment,
                                     percent=share_before).execute(CONTEXT)  # fmt: skip

    SHARES_SEEN.clear()

    def error_ratio(revision: str) -> float:
        share = _canary_share(stand_in, new)
        SHARES_SEEN.append(share)
        return 0.3 if revision == new and failing_from is not None and share >= failing_from else 0.0

    with RevisionPrometheus(error_ratio) as prometheus:
        sources = {"metrics": {"kind": "prometheus", "url": prometheus.url, "scopes": {"canary": {"revision": new}},
                               "step_s": 1}}  # fmt: skip
        operator = CloudRunSteppedCanaryOperator(
            task_id="canary_steps", gcp_conn_id=CONN_ID, deployment=deployment, steps=[10, 25, 50], plan=PLAN,
            sources=sources, poll_s=0.01, deferrable=deferrable,
        )  # fmt: skip
        result, deferrals = _until_decided(operator)
    assert deferrals == (len(result["steps"]) if deferrable else 0)  # one per analysed step, none in-process
    json.dumps(result)  # XCom-ready: plain data
    return deployment, result


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "in-process"])
def test_every_step_passes_then_promote(stand_in: StandIn, deferrable: bool) -> None:
    deployment, result = _rollout(stand_in, failing_from=None, deferrable=deferrable)
    assert result["decision"] == "promote" and result["failed_step"] is None
    assert [(s["percent"], s["decision"]) for s in result["steps"]] == [
        (10, "promote"),
        (25, "promote"),
        (50, "promote"),
    ]
    assert all(s["ended_at"] >= s["started_at"] and s["evidence"]["checks"] >= 2 for s in result["steps"])
    assert _canary_share(stand_in, deployment["new_revision"]) == 50  # promotion is the DAG's next task
    CloudRunPromoteOperator(task_id="promote", gcp_conn_id=CONN_ID, deployment=deployment).execute(CONTEXT)
    assert _canary_share(stand_in, deployment["new_revision"]) == 100


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "in-process"])
def test_a_failing_step_stops_the_rollout_and_rolls_back(stand_in: StandIn, deferrable: bool) -> None:
    deployment, result = _rollout(stand_in, failing_from=25, deferrable=deferrable)
    assert result["decision"] == "rollback" and result["failed_step"] == 25
    assert [(s["percent"], s["decision"]) for s in result["steps"]] == [(10, "promote"), (25, "rollback")]
    failed = result["steps"][-1]
    assert "failed checks > failure_limit 0" in failed["reason"]
    rule = failed["evidence"]["evidence"]["results"][0]  # the step's last check, rule by rule
    assert rule["verdict"] == "fail" and rule["value"] == pytest.approx(0.3) and "http_requests_total" in rule["query"]
    assert _canary_share(stand_in, deployment["new_revision"]) == 25  # never went to 50%
    CloudRunRollbackOperator(task_id="rollback", gcp_conn_id=CONN_ID, deployment=deployment).execute(CONTEXT)
    assert _canary_share(stand_in, deployment["new_revision"]) == 0


def test_a_retry_resumes_at_the_share_the_canary_already_has(stand_in: StandIn, tmp_path) -> None:
    """An earlier try shifted to 25% (so 10% had passed) and died: the retry analyses 25% afresh and goes on
    to 50%, without taking traffic back to 10%."""
    deployment, result = _rollout(stand_in, failing_from=None, deferrable=True, share_before=25)
    assert result["decision"] == "promote" and result["passed_earlier"] == [10]
    assert [s["percent"] for s in result["steps"]] == [25, 50]
    assert result["reason"] == "all 3 steps passed (10%, 25%, 50%); 10% in an earlier try (the canary already had 25%)"
    assert _canary_share(stand_in, deployment["new_revision"]) == 50
    assert set(SHARES_SEEN) == {25, 50}, SHARES_SEEN  # the metrics never saw the canary back at 10%
    # the report numbers the steps as the plan does and says which one passed in the earlier try
    record = {"plan": "t", "run_id": "r", "targets": {}, "canaries": {f"{SERVICE}/{REGION}": {
        "service": SERVICE, "region": REGION, "deploy": deployment, "monitor": result}}}  # fmt: skip
    markdown = Path(write_run_report(record, tmp_path)["markdown"]).read_text()
    assert "Passed in an earlier try of this task: 10%" in markdown
    assert "#### Step 2 (25%): promote" in markdown and "#### Step 3 (50%): promote" in markdown


def test_an_event_without_the_resume_state_is_refused() -> None:
    operator = CloudRunSteppedCanaryOperator(task_id="monitor", deployment={}, steps=[10, 25], plan=PLAN, sources={})
    with pytest.raises(ValueError, match=r"monitor: the trigger's event has no resume state"):
        operator.step_complete(CONTEXT, event={"decision": "promote", "reason": "3 passing checks"})


def test_steps_are_checked() -> None:
    assert check_steps([10, 25, 50]) == (10, 25, 50)
    with pytest.raises(ValueError, match=r"deploy\.steps: \[25, 10\] must increase"):
        check_steps([25, 10])
    with pytest.raises(ValueError, match=r"deploy\.steps: \[0, 100\] are not whole percentages between 1 and 99"):
        check_steps([0, 50, 100])
    with pytest.raises(ValueError, match="expected a list of traffic percentages"):
        run_steps("10,25", shift=print, analyse_step=lambda p: {"decision": "promote"})


# --- the weekly DAG with deploy.steps ---------------------------------------------------------------------------


def _weekly(stand_in: StandIn, failing_from: int | None, tmp_path, monkeypatch, pg_url) -> tuple[dict, dict, str]:
    """A weekly run with deploy.steps [10, 25, 50]; the deployed revision's errors start once it gets
    ``failing_from`` percent. Returns the task states, the run record and the Markdown report."""

    def error_ratio(revision: str) -> float:
        fresh = revision != f"{SERVICE}-00001-abc"
        return 0.3 if fresh and failing_from is not None and _canary_share(stand_in, revision) >= failing_from else 0.0

    with RevisionPrometheus(error_ratio) as prometheus:
        canary_connections(monkeypatch, "t_steps", stand_in.extra(PROJECT), prometheus.port)
        text = canary_plan("t_steps", PROJECT, [(SERVICE, REGION)], "steps: [10, 25, 50]")
        run, record = run_plan(text, pg_url, tmp_path, monkeypatch)
    (report,) = (tmp_path / "reports").glob("t_steps/*/report.md")
    return states(run), record, report.read_text()


@pytest.mark.airflow
def test_weekly_dag_promotes_after_every_step_passed(stand_in, tmp_path, monkeypatch, pg_url) -> None:
    st, record, report = _weekly(stand_in, None, tmp_path, monkeypatch, pg_url)
    group = f"canary_{SERVICE}_{REGION}".replace("-", "_")
    assert st[f"{group}.promote"] == "success" and st[f"{group}.rollback"] == "skipped", st
    assert f"{group}.shift_traffic" not in st  # the stepped analysis shifts traffic itself
    canary = record["canaries"][f"{SERVICE}/{REGION}"]
    assert [(s["percent"], s["decision"]) for s in canary["monitor"]["steps"]] == [
        (10, "promote"), (25, "promote"), (50, "promote")]  # fmt: skip
    assert stand_in.run.services[PATH]["traffic"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    new = canary["deploy"]["new_revision"]
    assert f"Revisions: old `{SERVICE}-00001-abc`, new `{new}`" in report
    for n, percent in enumerate((10, 25, 50), start=1):
        assert f"#### Step {n} ({percent}%): promote" in report
    assert report.count(f"`{new}` (canary) 1000 in 60 s") == 3  # requests per revision, at each step
    assert "http_requests_total" in report  # each rule's query


@pytest.mark.airflow
def test_weekly_dag_rolls_back_from_the_step_that_fails(stand_in, tmp_path, monkeypatch, pg_url) -> None:
    st, record, report = _weekly(stand_in, 25, tmp_path, monkeypatch, pg_url)
    group = f"canary_{SERVICE}_{REGION}".replace("-", "_")
    assert st[f"{group}.rollback"] == "success" and st[f"{group}.promote"] == "skipped", st
    monitor = record["canaries"][f"{SERVICE}/{REGION}"]["monitor"]
    assert monitor["decision"] == "rollback" and monitor["failed_step"] == 25
    assert [(s["percent"], s["decision"]) for s in monitor["steps"]] == [(10, "promote"), (25, "rollback")]
    old = {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": f"{SERVICE}-00001-abc", "percent": 100}
    assert stand_in.run.services[PATH]["traffic"] == [old]
    assert "#### Step 1 (10%): promote" in report and "#### Step 2 (25%): rollback" in report
    assert "Step 3" not in report  # never reached 50%
    step = report[report.index("#### Step 2 (25%)") :]
    # the failing rule's evidence: its value against the limit, and the breach as times with its duration
    assert "| error_ratio[canary] | canary `" in step and "| 0.3 | 0.05 | fail |" in step
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC … \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \([\d.]+ s\)", step)
    assert "t=" not in report
