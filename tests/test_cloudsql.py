"""Cloud SQL Admin through the real discovery client (sqladmin v1) against the local stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from dbopt.cloud.cloudsql import CloudSQL, OperationTimeout
from dbopt.cloud.gcp import CloudError, GcpSettings
from dbopt.cloud.standin import StandIn
from dbopt.operators.cloudsql import CloudSQLBackupOperator, CloudSQLListBackupsOperator, CloudSQLSetTierOperator

PROJECT, INSTANCE = "ion-mentoring", "ion-primary"
CONN_ID = "dbopt_test_cloudsql"


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    with StandIn(lro_polls=2) as server:
        server.sql.seed(PROJECT, INSTANCE, tier="db-custom-16-61440")
        conn = {"conn_type": "google_cloud_platform", "extra": server.extra(PROJECT)}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        yield server


@pytest.fixture
def sql(stand_in: StandIn) -> CloudSQL:
    return CloudSQL.connect(GcpSettings.from_extra(stand_in.extra(PROJECT), source="test"), poll_s=0.01, timeout_s=5)


def _op(cls: type, **kwargs: object):
    return cls(task_id=cls.__name__, gcp_conn_id=CONN_ID, instance=INSTANCE, poll_s=0.01, **kwargs)


def _calls(stand_in: StandIn, method: str, suffix: str) -> int:
    return sum(1 for m, path in stand_in.requests if m == method and path.endswith(suffix))


def test_backup_waits_until_done_and_is_listed(stand_in: StandIn) -> None:
    result = _op(CloudSQLBackupOperator, description="before week-17 indexes").execute({})
    assert json.loads(json.dumps(result)) == result
    assert result["backup"]["status"] == "SUCCESSFUL"
    assert result["backup"]["type"] == "ON_DEMAND"
    assert _calls(stand_in, "GET", "/operations/" + result["operation"]) == 3  # PENDING -> RUNNING x2 -> DONE

    _op(CloudSQLBackupOperator, description="second").execute({})
    listed = _op(CloudSQLListBackupsOperator).execute({})
    assert [b["description"] for b in listed] == ["second", "before week-17 indexes"]  # newest first
    assert all(b["status"] == "SUCCESSFUL" for b in listed)


def test_tier_change_waits_and_is_idempotent(stand_in: StandIn) -> None:
    change = _op(CloudSQLSetTierOperator, tier="db-custom-8-30720").execute({})
    assert change == {
        "project": PROJECT,
        "instance": INSTANCE,
        "previous_tier": "db-custom-16-61440",
        "tier": "db-custom-8-30720",
        "changed": True,
        "operation": change["operation"],
    }
    assert stand_in.sql.instances[(PROJECT, INSTANCE)]["settings"]["tier"] == "db-custom-8-30720"
    assert stand_in.sql.operations[(PROJECT, change["operation"])]["status"] == "DONE"

    again = _op(CloudSQLSetTierOperator, tier="db-custom-8-30720").execute({})
    assert again["changed"] is False
    assert _calls(stand_in, "PATCH", f"/instances/{INSTANCE}") == 1


def test_operation_in_progress_is_waited_for(stand_in: StandIn, sql: CloudSQL) -> None:
    """An automated backup holds the instance: 409, wait for it, then the tier change goes through."""
    running = stand_in.sql.start_operation(PROJECT, INSTANCE, "BACKUP_VOLUME", polls=3)
    change = sql.set_tier(INSTANCE, "db-custom-8-30720")
    assert change.changed
    assert stand_in.sql.rejected == [(INSTANCE, "instances.patch")]
    assert stand_in.sql.operations[(PROJECT, running)]["status"] == "DONE"

    stand_in.sql.start_operation(PROJECT, INSTANCE, "UPDATE", polls=1)
    assert sql.backup(INSTANCE, "after resize").backup.status == "SUCCESSFUL"
    assert stand_in.sql.rejected[-1] == (INSTANCE, "backupRuns.insert")


def test_operation_in_progress_gives_up_clearly(stand_in: StandIn) -> None:
    sql = CloudSQL.connect(GcpSettings.from_extra(stand_in.extra(PROJECT), source="t"), poll_s=0.01, timeout_s=0.2)
    stand_in.sql.start_operation(PROJECT, INSTANCE, "BACKUP_VOLUME", polls=10_000)
    with pytest.raises(OperationTimeout, match=r"BACKUP_VOLUME\) still RUNNING after 0.2s"):
        sql.set_tier(INSTANCE, "db-custom-8-30720")
    assert stand_in.sql.instances[(PROJECT, INSTANCE)]["settings"]["tier"] == "db-custom-16-61440"


def test_busy_retries_are_bounded(stand_in: StandIn, sql: CloudSQL) -> None:
    """409 with no operation to wait for (Google-side work): retry after a pause, a bounded number of times."""
    stand_in.sql.busy_without_operation(PROJECT, INSTANCE, times=2)
    assert sql.backup(INSTANCE, "run 1").backup.status == "SUCCESSFUL"
    assert len(stand_in.sql.rejected) == 2

    stand_in.sql.busy_without_operation(PROJECT, INSTANCE, times=100)
    sql.busy_retries = 2
    with pytest.raises(CloudError, match=r"other admin operations kept running \(3 attempts\)"):
        sql.set_tier(INSTANCE, "db-custom-8-30720")
    assert len(stand_in.sql.rejected) == 5
    assert stand_in.sql.instances[(PROJECT, INSTANCE)]["settings"]["tier"] == "db-custom-16-61440"


def test_unknown_instance_is_reported(sql: CloudSQL) -> None:
    with pytest.raises(CloudError, match=r"instance nope .*not found"):
        sql.backup("nope", "run 1")
    with pytest.raises(CloudError, match="a backup needs a description naming the run"):
        sql.backup(INSTANCE, "")
    with pytest.raises(CloudError, match="tier must be a machine type"):
        sql.set_tier(INSTANCE, "")


def test_retried_backup_task_waits_for_its_first_backup(stand_in: StandIn, sql: CloudSQL) -> None:
    """Attempt 1 started the backup and died; attempt 2 must not start another (one backup per run)."""
    description = "dbopt adhoc_airflow scheduled__2026-04-21"  # the operator's default for this run
    started = sql._api.backupRuns().insert(project=PROJECT, instance=INSTANCE, body={"description": description})
    first_id = started.execute()["backupContext"]["backupId"]  # attempt 1 died right after this call
    again = _op(CloudSQLBackupOperator).execute({"run_id": "scheduled__2026-04-21"})
    assert again["reused"] is True and again["backup"]["id"] == first_id
    assert again["backup"]["status"] == "SUCCESSFUL"
    assert _calls(stand_in, "POST", "/backupRuns") == 1
    _op(CloudSQLBackupOperator).execute({"run_id": "scheduled__2026-04-28"})  # another run: its own backup
    assert _calls(stand_in, "POST", "/backupRuns") == 2


def test_failed_backup_is_reported_and_a_retry_starts_a_new_one(stand_in: StandIn, sql: CloudSQL) -> None:
    stand_in.sql.fail_next_operation("Backup failed: disk quota exceeded", code="BACKUP_FAILED")
    with pytest.raises(CloudError, match=r"BACKUP_VOLUME.* failed: BACKUP_FAILED: Backup failed: disk quota"):
        sql.backup(INSTANCE, "run 7")
    assert sql.backup(INSTANCE, "run 7").backup.status == "SUCCESSFUL"  # the failed run is not reused
    assert [b.status for b in sql.list_backups(INSTANCE)] == ["SUCCESSFUL", "FAILED"]


def test_transient_errors_are_retried_num_retries_times(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {**stand_in.extra(PROJECT), "num_retries": 1}
    sql = CloudSQL.connect(GcpSettings.from_extra(extra, source="t"), poll_s=0.01, timeout_s=5)
    assert sql.num_retries == 1
    stand_in.fail_next(503)
    assert sql.tier(INSTANCE) == "db-custom-16-61440"  # one 503 UNAVAILABLE, then the answer
    stand_in.fail_next(429, 429)
    with pytest.raises(CloudError, match="HTTP 429"):
        sql.tier(INSTANCE)
