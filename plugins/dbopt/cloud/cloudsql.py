"""Cloud SQL Admin API (sqladmin v1, discovery client): on-demand backups and tier changes.

Cloud SQL runs one admin operation per instance at a time; a second one gets HTTP 409
``operationInProgress`` (an automated backup, a maintenance update ...). We then wait for the running
operations to finish and try again, a bounded number of times. Transient failures (429, 5xx, dropped
connections) are retried by the client library itself, ``num_retries`` times with exponential backoff (the
connection's ``num_retries``, as the Google provider does). A backup whose description names the run (the
operator's default) is started once per run: a retried task finds it and waits for it instead.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from googleapiclient.errors import HttpError

from dbopt.cloud.gcp import DEFAULT_NUM_RETRIES, CloudError, GcpSettings
from dbopt.targets.base import Data

log = logging.getLogger(__name__)

# A backup run in one of these states is this run's backup, done or under way; others (FAILED …) are not.
_USABLE_BACKUP = {"ENQUEUED", "RUNNING", "SUCCESSFUL"}


class OperationTimeout(CloudError):
    """An admin operation did not finish in time (it may still finish later on Google's side)."""


@dataclass(frozen=True)
class Operation(Data):
    name: str
    operation_type: str
    status: str  # PENDING | RUNNING | DONE
    target: str
    error: str = ""

    @classmethod
    def from_api(cls, op: dict[str, Any]) -> Operation:
        errors = op.get("error", {}).get("errors", [])
        return cls(
            name=op["name"],
            operation_type=op.get("operationType", ""),
            status=op.get("status", ""),
            target=op.get("targetId", ""),
            error="; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors),
        )


@dataclass(frozen=True)
class BackupRun(Data):
    id: str
    status: str  # e.g. RUNNING, SUCCESSFUL, FAILED
    type: str  # ON_DEMAND | AUTOMATED
    description: str = ""
    start_time: str = ""
    end_time: str = ""

    @classmethod
    def from_api(cls, run: dict[str, Any]) -> BackupRun:
        return cls(
            id=str(run.get("id", "")),
            status=run.get("status", ""),
            type=run.get("type", ""),
            description=run.get("description", ""),
            start_time=run.get("startTime", ""),
            end_time=run.get("endTime", ""),
        )


@dataclass(frozen=True)
class BackupResult(Data):
    project: str
    instance: str
    operation: str  # empty when an earlier attempt's backup was reused
    backup: BackupRun | None  # None if the API did not say which backup run the operation made
    reused: bool = False  # True: a retried task found the backup its first attempt started


@dataclass(frozen=True)
class TierChange(Data):
    project: str
    instance: str
    previous_tier: str
    tier: str
    changed: bool
    operation: str = ""  # empty when the tier already was the requested one


class CloudSQL:
    """Cloud SQL instances of one project."""

    def __init__(
        self,
        api: Any,
        project: str,
        *,
        poll_s: float = 5.0,
        timeout_s: float = 1800.0,
        busy_retries: int = 5,
        num_retries: int = DEFAULT_NUM_RETRIES,
    ) -> None:
        self._api = api
        self.project = project
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.busy_retries = busy_retries
        self.num_retries = num_retries

    @classmethod
    def connect(cls, settings: GcpSettings, **options: Any) -> CloudSQL:
        """The real discovery client from the document shipped in the wheel (no discovery fetch)."""
        import httplib2
        from googleapiclient.discovery import build

        client_options = {"api_endpoint": settings.endpoint + "/"} if settings.endpoint else None
        auth: dict[str, Any] = (
            {"http": httplib2.Http(timeout=60)} if settings.anonymous else {"credentials": settings.credentials()}
        )
        api = build(
            "sqladmin", "v1", static_discovery=True, cache_discovery=False, client_options=client_options, **auth
        )
        return cls(api, settings.project, **{"num_retries": settings.num_retries, **options})

    def tier(self, instance: str) -> str:
        found = self._execute(instance, lambda: self._api.instances().get(project=self.project, instance=instance))
        return found["settings"]["tier"]

    def backup(self, instance: str, description: str) -> BackupResult:
        """Start an on-demand backup run and wait until it is done.

        ``description`` should name the run (e.g. ``dbopt weekly-ion scheduled__2026-04-21``): a backup run
        with the same description that is done or under way is this run's, and is waited for, not repeated.
        """
        if not description:
            raise CloudError(f"{instance}: a backup needs a description naming the run (it makes retries safe)")
        earlier = next((b for b in self.list_backups(instance, limit=50) if b.description == description), None)
        if earlier is not None and earlier.status in _USABLE_BACKUP:
            log.info("backup %s of %s (%s) was started by an earlier attempt", earlier.id, instance, earlier.status)
            return BackupResult(self.project, instance, "", self._wait_backup(instance, earlier), reused=True)
        op = self._when_free(
            instance,
            lambda: self._api.backupRuns().insert(
                project=self.project, instance=instance, body={"description": description}
            ),
        )
        log.info("backup of %s started (operation %s)", instance, op["name"])
        self.wait(op["name"])
        backup_id = op.get("backupContext", {}).get("backupId")
        run = None
        if backup_id:
            run = BackupRun.from_api(
                self._execute(
                    instance,
                    lambda: self._api.backupRuns().get(project=self.project, instance=instance, id=backup_id),
                )
            )
            log.info("backup %s of %s: %s", run.id, instance, run.status)
        return BackupResult(self.project, instance, op["name"], run)

    def _wait_backup(self, instance: str, run: BackupRun) -> BackupRun:
        deadline = time.monotonic() + self.timeout_s
        while run.status != "SUCCESSFUL":
            if run.status not in _USABLE_BACKUP:
                raise CloudError(f"Cloud SQL backup {run.id} of {instance} ended {run.status}")
            if time.monotonic() >= deadline:
                raise OperationTimeout(
                    f"Cloud SQL backup {run.id} of {instance} still {run.status} after {self.timeout_s:g}s"
                )
            time.sleep(self.poll_s)
            request = functools.partial(self._api.backupRuns().get, project=self.project, instance=instance, id=run.id)
            found = self._execute(instance, request)
            run = BackupRun.from_api(found)
        return run

    def list_backups(self, instance: str, limit: int = 20) -> list[BackupRun]:
        """Most recent backup runs first (what the API returns)."""
        found = self._execute(
            instance,
            lambda: self._api.backupRuns().list(project=self.project, instance=instance, maxResults=limit),
        )
        return [BackupRun.from_api(item) for item in found.get("items", [])]

    def set_tier(self, instance: str, tier: str) -> TierChange:
        """Patch ``settings.tier`` and wait. Changing the tier RESTARTS the instance; unchanged = no call."""
        if not tier or not isinstance(tier, str):
            raise CloudError(f"{instance}: tier must be a machine type such as 'db-custom-2-7680', got {tier!r}")
        previous = self.tier(instance)
        if previous == tier:
            log.info("%s already runs tier %s; nothing to do", instance, tier)
            return TierChange(self.project, instance, previous, tier, changed=False)
        op = self._when_free(
            instance,
            lambda: self._api.instances().patch(
                project=self.project, instance=instance, body={"settings": {"tier": tier}}
            ),
        )
        log.info("tier of %s: %s -> %s (operation %s; the instance restarts)", instance, previous, tier, op["name"])
        self.wait(op["name"])
        return TierChange(self.project, instance, previous, tier, changed=True, operation=op["name"])

    def wait(self, operation: str, timeout_s: float | None = None) -> Operation:
        """Poll ``operations.get`` until DONE; raise if it failed or took longer than the timeout."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        while True:
            op = Operation.from_api(
                self._api.operations()
                .get(project=self.project, operation=operation)
                .execute(num_retries=self.num_retries)
            )
            if op.status == "DONE":
                if op.error:
                    raise CloudError(f"Cloud SQL operation {operation} ({op.operation_type}) failed: {op.error}")
                return op
            if time.monotonic() >= deadline:
                raise OperationTimeout(
                    f"Cloud SQL operation {operation} ({op.operation_type}) still {op.status} after {limit:g}s"
                )
            time.sleep(self.poll_s)

    def running_operations(self, instance: str) -> list[Operation]:
        found = self._execute(instance, lambda: self._api.operations().list(project=self.project, instance=instance))
        return [op for op in map(Operation.from_api, found.get("items", [])) if op.status != "DONE"]

    # -- replicas (downsizing by replica: dbopt.cloud.resize) --------------------------------------------

    def instance(self, instance: str) -> dict[str, Any]:
        """The DatabaseInstance resource as the API returns it."""
        return self._execute(instance, lambda: self._api.instances().get(project=self.project, instance=instance))

    def list_instances(self) -> list[dict[str, Any]]:
        return self._execute("(all)", lambda: self._api.instances().list(project=self.project)).get("items", [])

    def create_replica(self, primary: str, name: str, tier: str, timeout_s: float | None = None) -> Operation:
        """``instances.insert`` with ``masterInstanceName``: a read replica of ``primary`` on ``tier``; waits."""
        source = self.instance(primary)
        body = {
            "name": name,
            "masterInstanceName": primary,
            "region": source.get("region"),
            "databaseVersion": source.get("databaseVersion"),
            "settings": {"tier": tier},
        }
        op = self._when_free(primary, lambda: self._api.instances().insert(project=self.project, body=body))
        log.info("replica %s of %s on tier %s: creating (operation %s)", name, primary, tier, op["name"])
        return self.wait(op["name"], timeout_s)

    def promote_replica(self, replica: str) -> Operation:
        """``instances.promoteReplica``: the replica becomes a stand-alone primary; waits."""
        op = self._when_free(
            replica, lambda: self._api.instances().promoteReplica(project=self.project, instance=replica)
        )
        return self.wait(op["name"])

    def delete_instance(self, instance: str) -> Operation:
        op = self._when_free(instance, lambda: self._api.instances().delete(project=self.project, instance=instance))
        return self.wait(op["name"])

    def set_labels(self, instance: str, labels: dict[str, str | None]) -> Operation:
        """Patch ``settings.userLabels`` (no restart); a None value removes that label."""
        op = self._when_free(
            instance,
            lambda: self._api.instances().patch(
                project=self.project, instance=instance, body={"settings": {"userLabels": labels}}
            ),
        )
        return self.wait(op["name"])

    def _when_free(self, instance: str, request: Callable[[], Any]) -> dict[str, Any]:
        """Run a mutating request; on 409 wait for the instance's running operations and retry."""
        for attempt in range(1, self.busy_retries + 2):
            try:
                return request().execute(num_retries=self.num_retries)
            except HttpError as err:
                if err.resp.status != 409:
                    raise _error(instance, err) from err
                busy = self.running_operations(instance)
                log.warning(
                    "%s is busy (attempt %d: %s); waiting for %s",
                    instance,
                    attempt,
                    err.reason,
                    ", ".join(f"{op.operation_type} {op.name}" for op in busy) or "a moment",
                )
                for op in busy:
                    self.wait(op.name)
                if not busy:
                    time.sleep(self.poll_s)
        raise CloudError(
            f"{instance}: other admin operations kept running ({self.busy_retries + 1} attempts); "
            "retry after they are done (see the instance's operations list)"
        )

    def _execute(self, instance: str, request: Callable[[], Any]) -> dict[str, Any]:
        try:
            return request().execute(num_retries=self.num_retries)
        except HttpError as err:
            raise _error(instance, err) from err


def _error(instance: str, err: HttpError) -> CloudError:
    if err.resp.status == 404:
        return CloudError(f"Cloud SQL instance {instance} (or its resource) not found: {err.reason}; check the name")
    return CloudError(f"Cloud SQL call for {instance} failed with HTTP {err.resp.status}: {err.reason}")
