"""Cloud Run canary deploys through the real google-cloud-run REST client against the local stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from dbopt.cloud.cloudrun import CloudRun, ConcurrentModificationError, Deployment, RevisionNotReady, revision_name
from dbopt.cloud.gcp import CloudError, ConfigError, GcpSettings
from dbopt.cloud.standin import StandIn
from dbopt.hooks.cloudrun import CloudRunHook
from dbopt.operators.cloudrun import (
    CloudRunDeployRevisionOperator,
    CloudRunPromoteOperator,
    CloudRunRollbackOperator,
    CloudRunSetScalingOperator,
    CloudRunShiftTrafficOperator,
)

PROJECT, REGION, SERVICE = "ion-mentoring", "us-central1", "ion-api"
PATH = f"projects/{PROJECT}/locations/{REGION}/services/{SERVICE}"
FIRST = f"{SERVICE}-00001-abc"
CONN_ID = "dbopt_test_cloudrun"
CONTEXT = {"run_id": "scheduled__2026-04-21T00:00:00+00:00"}


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    with StandIn(lro_polls=2) as server:
        server.run.seed(PROJECT, REGION, SERVICE, env={"DB_POOL_SIZE": "10", "LOG_LEVEL": "info"})
        conn = {"conn_type": "google_cloud_platform", "extra": server.extra(PROJECT)}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        yield server


@pytest.fixture
def run(stand_in: StandIn) -> CloudRun:
    return CloudRun.connect(GcpSettings.from_extra(stand_in.extra(PROJECT), source="test"), poll_s=0.01)


def _op(cls: type, **kwargs: object):
    return cls(task_id=cls.__name__, gcp_conn_id=CONN_ID, poll_s=0.01, **kwargs)


def _deploy() -> dict:
    op = _op(CloudRunDeployRevisionOperator, service=SERVICE, region=REGION, env={"DB_POOL_SIZE": 15})
    return op.execute(CONTEXT)


def _split(stand_in: StandIn) -> list[tuple[str, int, str]]:
    return [(t["revision"], t["percent"], t["tag"]) for t in stand_in.run.services[PATH]["trafficStatuses"]]


def _patches(stand_in: StandIn) -> int:
    return sum(1 for method, _ in stand_in.requests if method == "PATCH")


def _jsonable(value: object) -> object:
    assert json.loads(json.dumps(value)) == value
    return value


def test_deploy_creates_named_revision_without_traffic(stand_in: StandIn, run: CloudRun) -> None:
    record = _jsonable(_deploy())
    new = revision_name(SERVICE, {"DB_POOL_SIZE": "15"}, None, CONTEXT["run_id"], REGION)
    assert record == {
        "project": PROJECT,
        "region": REGION,
        "service": SERVICE,
        "previous_revision": FIRST,
        "new_revision": new,
    }
    assert _split(stand_in) == [(FIRST, 100, ""), (new, 0, "canary")]  # like deploy --no-traffic --tag canary
    state = run.describe(SERVICE, REGION)
    assert state.latest_ready_revision == new
    assert state.env == {"DB_POOL_SIZE": "15", "LOG_LEVEL": "info"}  # changed one variable, kept the other


def test_deploy_retry_finds_the_same_revision(stand_in: StandIn) -> None:
    first = _deploy()
    patches = _patches(stand_in)
    assert _deploy() == first
    assert _patches(stand_in) == patches  # nothing sent again
    assert sorted(stand_in.run.revisions[PATH]) == sorted([FIRST, first["new_revision"]])


def test_deploy_canary_then_promote(stand_in: StandIn) -> None:
    record = _deploy()
    new = record["new_revision"]
    state = _jsonable(_op(CloudRunShiftTrafficOperator, deployment=record, percent="10").execute(CONTEXT))
    assert _split(stand_in) == [(FIRST, 90, ""), (new, 10, "canary")]
    assert {(t["revision"], t["percent"]) for t in state["traffic"]} == {(FIRST, 90), (new, 10)}
    state = _jsonable(_op(CloudRunPromoteOperator, deployment=record).execute(CONTEXT))
    assert state["traffic"] == [{"revision": new, "percent": 100, "tag": "", "latest": True}]
    assert stand_in.run.services[PATH]["traffic"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]


def test_deploy_canary_then_rollback(stand_in: StandIn) -> None:
    record = _deploy()
    _op(CloudRunShiftTrafficOperator, deployment=record, percent=10).execute(CONTEXT)
    state = _jsonable(_op(CloudRunRollbackOperator, deployment=record).execute(CONTEXT))
    assert _split(stand_in) == [(FIRST, 100, "")]
    assert state["traffic"] == [{"revision": FIRST, "percent": 100, "tag": "", "latest": False}]


def test_rollback_after_crash_mid_canary(stand_in: StandIn) -> None:
    """The worker died at 90/10; a fresh operator with only the deploy's XCom restores the old revision."""
    record = json.loads(json.dumps(_deploy()))  # as stored in XCom
    _op(CloudRunShiftTrafficOperator, deployment=record, percent=10).execute(CONTEXT)
    assert _split(stand_in) == [(FIRST, 90, ""), (record["new_revision"], 10, "canary")]

    rollback = _op(CloudRunRollbackOperator, deployment=json.dumps(record))  # Jinja-rendered form works too
    rollback.execute(CONTEXT)
    assert _split(stand_in) == [(FIRST, 100, "")]
    patches = _patches(stand_in)
    _op(CloudRunRollbackOperator, deployment=record).execute(CONTEXT)  # idempotent: nothing to send
    assert _patches(stand_in) == patches


def test_rollback_without_record_uses_the_non_canary_revision(stand_in: StandIn, run: CloudRun) -> None:
    """Crash before the deploy's XCom was written: the split is all we have."""
    new = run.deploy(SERVICE, REGION, run_id="lost", env={"DB_POOL_SIZE": "15"}).new_revision
    stand_in.run.set_traffic(
        PATH,
        [
            {"type": 2, "revision": new, "percent": 10, "tag": "canary"},
            {"type": 2, "revision": FIRST, "percent": 90},
        ],
    )
    rollback = _op(CloudRunRollbackOperator, deployment="None", service=SERVICE, region=REGION)
    rollback.execute(CONTEXT)
    assert _split(stand_in) == [(FIRST, 100, "")]


def test_rollback_needs_a_record_or_a_service(stand_in: StandIn) -> None:
    with pytest.raises(CloudError, match=r"give deployment=deploy\.output, or service and region"):
        _op(CloudRunRollbackOperator).execute(CONTEXT)
    with pytest.raises(CloudError, match="missing new_revision"):
        _op(
            CloudRunPromoteOperator,
            deployment={"project": PROJECT, "region": REGION, "service": SERVICE, "previous_revision": FIRST},
        ).execute(CONTEXT)


@pytest.mark.parametrize("etag_status", [409, 412])
def test_concurrent_change_is_retried(etag_status: int) -> None:
    with StandIn(lro_polls=0, etag_status=etag_status) as stand_in:
        stand_in.run.seed(PROJECT, REGION, SERVICE)
        run = CloudRun.connect(GcpSettings.from_extra(stand_in.extra(PROJECT), source="test"), poll_s=0.01)
        stand_in.run.concurrent_write(PATH, times=2)  # someone writes between our read and our write, twice
        state = run.set_scaling(SERVICE, REGION, 2, 80)
        assert (state.min_instances, state.max_instances) == (2, 80)
        assert _patches(stand_in) == 3


def test_concurrent_change_gives_up_clearly(stand_in: StandIn) -> None:
    run = CloudRun.connect(
        GcpSettings.from_extra(stand_in.extra(PROJECT), source="test"), poll_s=0.01, conflict_retries=2
    )
    stand_in.run.concurrent_write(PATH, times=10)
    with pytest.raises(ConcurrentModificationError, match=r"kept changing .* \(3 attempts.*does not match"):
        run.set_scaling(SERVICE, REGION, 2, 80)
    assert stand_in.run.services[PATH].get("scaling", {}) == {}  # nothing half-applied


def test_promote_refuses_when_another_deploy_is_latest(stand_in: StandIn, run: CloudRun) -> None:
    ours = Deployment.from_value(_deploy())
    run.deploy(SERVICE, REGION, run_id="someone-else", env={"DB_POOL_SIZE": "30"})
    with pytest.raises(CloudError, match="latest ready revision is ion-api-"):
        run.promote(ours)


def test_set_scaling_only_sends_changes(stand_in: StandIn) -> None:
    op = _op(CloudRunSetScalingOperator, service=SERVICE, region=REGION, min_instances="3", max_instances="100")
    state = _jsonable(op.execute(CONTEXT))
    assert (state["min_instances"], state["max_instances"]) == (3, 100)
    assert stand_in.run.services[PATH]["scaling"] == {"minInstanceCount": 3, "maxInstanceCount": 100}
    assert stand_in.run.updates[-1] == (PATH, ["scaling"])  # service-level: no new revision
    assert sorted(stand_in.run.revisions[PATH]) == [FIRST]
    patches = _patches(stand_in)
    op.execute(CONTEXT)
    assert _patches(stand_in) == patches


def test_bad_input_is_reported(run: CloudRun) -> None:
    with pytest.raises(CloudError, match="does not exist; check service, region and project"):
        run.describe("nope", REGION)
    with pytest.raises(CloudError, match="invalid variable name"):
        run.deploy(SERVICE, REGION, run_id="r", env={"DB POOL": "1"})
    with pytest.raises(CloudError, match="nothing to deploy"):
        run.deploy(SERVICE, REGION, run_id="r")
    with pytest.raises(CloudError, match="0 <= min <= max"):
        run.set_scaling(SERVICE, REGION, 5, 2)


def test_hook_reads_the_connection_extra(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = CloudRunHook(CONN_ID)
    assert hook.settings == GcpSettings(PROJECT, stand_in.endpoint, anonymous=True)
    assert hook.get_conn().describe(SERVICE, REGION).latest_ready_revision == FIRST
    monkeypatch.setenv(
        "AIRFLOW_CONN_DBOPT_NO_PROJECT",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"anonymous": True}}),
    )
    with pytest.raises(ConfigError, match="'dbopt_no_project' extra: field 'project' is missing"):
        CloudRunHook("dbopt_no_project").settings  # noqa: B018


def test_canary_steps_keep_tags_and_targets_they_do_not_own(stand_in: StandIn) -> None:
    """A ``stable`` tag and a 0% ``preview`` target someone else set survive deploy, steps and promote."""
    stand_in.run.set_traffic(
        PATH,
        [
            {"type": 1, "percent": 100},
            {"type": 2, "revision": FIRST, "tag": "stable"},
        ],
    )
    record = _deploy()
    new = record["new_revision"]
    assert _split(stand_in) == [(FIRST, 100, ""), (FIRST, 0, "stable"), (new, 0, "canary")]
    for step in (10, 25, 50):
        _op(CloudRunShiftTrafficOperator, deployment=record, percent=step).execute(CONTEXT)
        assert _split(stand_in) == [(FIRST, 100 - step, ""), (FIRST, 0, "stable"), (new, step, "canary")]
    _op(CloudRunPromoteOperator, deployment=record).execute(CONTEXT)
    assert _split(stand_in) == [(FIRST, 0, "stable"), (new, 100, "")]


def test_rollback_keeps_foreign_tags_and_drops_only_ours(stand_in: StandIn) -> None:
    record = _deploy()
    _op(CloudRunShiftTrafficOperator, deployment=record, percent=10).execute(CONTEXT)
    stand_in.run.set_traffic(
        PATH, [*stand_in.run.services[PATH]["traffic"], {"type": 2, "revision": FIRST, "tag": "stable"}]
    )
    _op(CloudRunRollbackOperator, deployment=record).execute(CONTEXT)
    assert _split(stand_in) == [(FIRST, 100, ""), (FIRST, 0, "stable")]


def test_failed_revision_is_reported_with_its_condition_also_on_retry(stand_in: StandIn) -> None:
    """The revision crashes at start: the deploy fails with Cloud Run's message; a retried deploy finds the
    revision and reports the same instead of calling it deployed; traffic never moved."""
    stand_in.run.fail_next_revision("Container called exit(1).")
    with pytest.raises(RevisionNotReady, match=r"ready: Container called exit\(1\)\. \[HEALTH_CHECK_CONTAINER_ERROR\]"):
        _deploy()
    with pytest.raises(RevisionNotReady, match=r"did not become ready: Container called exit\(1\)"):
        _deploy()  # the task's retry
    assert _split(stand_in) == [(FIRST, 100, "")]
    assert stand_in.run.services[PATH]["latestReadyRevision"].endswith(FIRST)


def test_deploy_waits_for_a_revision_that_takes_a_while(stand_in: StandIn) -> None:
    stand_in.run.ready_after_polls = 3
    record = _deploy()
    revision = stand_in.run.revisions[PATH][record["new_revision"]]
    assert revision["conditions"][0]["state"] == "CONDITION_SUCCEEDED"
    assert sum(1 for m, p in stand_in.requests if m == "GET" and p.endswith(record["new_revision"])) >= 3


def test_transient_errors_are_retried_with_backoff(stand_in: StandIn) -> None:
    run = CloudRun.connect(GcpSettings.from_extra(stand_in.extra(PROJECT), source="test"), poll_s=0.01, backoff_s=0.01)
    stand_in.fail_next(503, 429, 500)
    assert run.describe(SERVICE, REGION).latest_ready_revision == FIRST
    stand_in.fail_next(503)  # on the write itself
    assert run.set_scaling(SERVICE, REGION, 1, 10).max_instances == 10
    short = CloudRun(run._services, run._revisions, PROJECT, backoff_s=0.01, retry_timeout_s=0.05)
    stand_in.fail_next(*[503] * 50)
    with pytest.raises(CloudError, match="still failing after retries"):
        short.describe(SERVICE, REGION)


def test_same_change_in_three_regions_gets_three_revision_names(stand_in: StandIn, run: CloudRun) -> None:
    regions = ("us-central1", "europe-west1", "asia-east1")
    for region in regions[1:]:
        stand_in.run.seed(PROJECT, region, SERVICE)
    names = {run.deploy(SERVICE, r, run_id="w17", env={"DB_POOL_SIZE": "15"}).new_revision for r in regions}
    assert len(names) == 3
