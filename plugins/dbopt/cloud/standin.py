"""A local stand-in for the Cloud Run Admin API v2 and the Cloud SQL Admin API v1 (REST/JSON, plain HTTP).

The real client libraries talk to it unchanged (``{"endpoint": stand_in.endpoint, "anonymous": true}``).
It keeps state for any number of projects and locations, answers long-running operations that finish
after ``lro_polls`` polls, and fails the way Google does: 404 NOT_FOUND, 409 ABORTED on an etag mismatch
(AIP-154, which google-cloud-run raises as ``Aborted``; 412 if ``etag_status=412``), 409 ALREADY_EXISTS for
a reused revision name with another configuration, 409 ``operationInProgress`` while a Cloud SQL instance
runs another operation, 400 for bad traffic splits. On demand (for tests): a revision that fails its Ready
condition (the operation then ends with FAILED_PRECONDITION and the condition's message) or takes a while to
become ready, Cloud SQL operations that end with an error, transient 429/503 answers (``fail_next``), and,
given a ``TokenAuthority``, 401 for calls without its tokens.

Only loopback, random port; use it as a context manager or call ``start()``/``stop()``.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from dbopt.cloud.standin_auth import TokenAuthority, authorization
from dbopt.standin_server import BackgroundServer

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
_LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
_TRAFFIC_TYPES = {0: "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED", 1: _LATEST, 2: _REVISION}  # clients send ints
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

_RUN_SERVICE = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/services/[^/]+)$")
_RUN_REVISION = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/services/[^/]+)/revisions/([^/]+)$")
_RUN_OPERATION = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/operations/[^/]+)$")
_SQL_INSTANCE = re.compile(r"^/v1/projects/([^/]+)/instances/([^/]+)$")
_SQL_BACKUPS = re.compile(r"^/v1/projects/([^/]+)/instances/([^/]+)/backupRuns$")
_SQL_BACKUP = re.compile(r"^/v1/projects/([^/]+)/instances/([^/]+)/backupRuns/([^/]+)$")
_SQL_OPERATIONS = re.compile(r"^/v1/projects/([^/]+)/operations$")
_SQL_OPERATION = re.compile(r"^/v1/projects/([^/]+)/operations/([^/]+)$")
_SQL_INSTANCES = re.compile(r"^/v1/projects/([^/]+)/instances$")
_SQL_PROMOTE = re.compile(r"^/v1/projects/([^/]+)/instances/([^/]+)/promoteReplica$")


class ApiError(Exception):
    """Becomes a Google-shaped error response."""

    def __init__(self, code: int, message: str, *, status: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")
        self.reason = reason

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.reason:
            error["errors"] = [{"reason": self.reason, "domain": "global", "message": self.message}]
        return {"error": error}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pruned(value: Any) -> Any:
    """Drop proto3 defaults (0, "", False, empty) so JSON from the client and seeded JSON compare equal."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (0, "", False, None, [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


class CloudRunState:
    """Services, revisions and operations of the Cloud Run stand-in."""

    def __init__(self, lro_polls: int, etag_status: int) -> None:
        self.lro_polls = lro_polls
        self.etag_status = etag_status
        self.services: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, dict[str, dict[str, Any]]] = {}  # service path -> revision id -> revision
        self.operations: dict[str, dict[str, Any]] = {}
        self.foreign_writes: dict[str, int] = {}  # service path -> writes "someone else" makes before ours
        self.updates: list[tuple[str, list[str]]] = []  # (service path, update mask) of accepted PATCHes
        self.revision_failures: list[tuple[str, str]] = []  # (message, reason) for the next new revisions
        self.ready_after_polls = 0  # a new revision reports RECONCILING for this many reads, then Ready
        self._ids = itertools.count(1)

    def seed(
        self,
        project: str,
        region: str,
        service: str,
        *,
        image: str = "gcr.io/demo/app:v1",
        env: Mapping[str, str] | None = None,
        min_instances: int = 0,
        max_instances: int = 0,
    ) -> str:
        """A service with one ready revision ``{service}-00001-abc`` serving 100% (LATEST); returns its path."""
        path = f"projects/{project}/locations/{region}/services/{service}"
        container: dict[str, Any] = {"image": image, "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
        self.services[path] = {
            "name": path,
            "uid": f"uid-{next(self._ids)}",
            "generation": "0",
            "template": _pruned({"containers": [container]}),
            "traffic": [{"type": _LATEST, "percent": 100}],
            "scaling": _pruned({"minInstanceCount": min_instances, "maxInstanceCount": max_instances}),
        }
        self.revisions[path] = {}
        self._new_revision(path, f"{service}-00001-abc")
        self._commit(path)
        return path

    def concurrent_write(self, path: str, times: int = 1) -> None:
        """Make another writer change the service right before each of our next ``times`` writes."""
        self.foreign_writes[path] = self.foreign_writes.get(path, 0) + times

    def fail_next_revision(
        self,
        message: str = "The user-provided container failed to start and listen on the port defined provided by "
        "the PORT=8080 environment variable within the allocated timeout.",
        reason: str = "HEALTH_CHECK_CONTAINER_ERROR",
    ) -> None:
        """The next revision created fails its Ready condition with this message and ``RevisionReason``."""
        self.revision_failures.append((message, reason))

    def set_traffic(self, path: str, traffic: list[dict[str, Any]]) -> None:
        """Set traffic directly, e.g. to leave a service at 90/10 as a crashed canary would."""
        self.services[path]["traffic"] = self._checked_traffic(path, traffic)
        self._commit(path)

    # -- request handling -------------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any]:
        if m := _RUN_SERVICE.match(path):
            return self._service(m[1])
        if m := _RUN_REVISION.match(path):
            revision = self.revisions.get(m[1], {}).get(m[2])
            if revision is None:
                raise ApiError(404, f"Revision {m[2]} not found.")
            if revision["_polls_until_ready"] > 0:
                revision["_polls_until_ready"] -= 1
                if not revision["_polls_until_ready"]:
                    revision.update(reconciling=False, conditions=[{"type": "Ready", "state": "CONDITION_SUCCEEDED"}])
            return {k: v for k, v in revision.items() if not k.startswith("_")}
        if m := _RUN_OPERATION.match(path):
            return self._poll(m[1])
        raise ApiError(404, f"unknown path {path}")

    def patch(self, path: str, query: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        m = _RUN_SERVICE.match(path)
        if not m:
            raise ApiError(404, f"unknown path {path}")
        name = m[1]
        current = self._service(name)
        if self.foreign_writes.get(name):
            self.foreign_writes[name] -= 1
            self._commit(name)  # someone else's write: new generation and etag
        if body.get("etag") and body["etag"] != current["etag"]:
            raise ApiError(self.etag_status, f"etag {body['etag']} does not match the current etag {current['etag']}")
        mask = [p for v in query.get("updateMask", []) for p in v.split(",") if p]
        fields = mask or ["template", "traffic", "scaling"]
        unknown = set(fields) - {"template", "traffic", "scaling"}
        if unknown:
            raise ApiError(400, f"update mask paths not supported by the stand-in: {sorted(unknown)}")
        updated = copy.deepcopy(current)
        revision = None
        if "template" in fields and "template" in body:
            revision = self._template_revision(name, current, body["template"])
            updated["template"] = _pruned(body["template"])
        if "scaling" in fields:
            updated["scaling"] = _pruned(body.get("scaling", {}))
        if "traffic" in fields:  # may name the revision this very request creates
            updated["traffic"] = self._checked_traffic(name, body.get("traffic", []), also=revision)
        self.services[name] = updated
        failure = self._new_revision(name, revision) if revision else None
        self._commit(name, failure)
        self.updates.append((name, mask))
        if failure:  # as Cloud Run reports it: the operation fails with the revision's condition
            message = f"Revision '{revision}' is not ready and cannot serve traffic. {failure}"
            return self._operation(name, error={"code": 9, "message": message})
        return self._operation(name)

    # -- helpers -------------------------------------------------------------------------------------

    def _service(self, name: str) -> dict[str, Any]:
        service = self.services.get(name)
        if service is None:
            raise ApiError(404, f"Resource '{name.rsplit('/', 1)[-1]}' of kind 'SERVICE' does not exist.")
        return service

    def _template_revision(self, name: str, current: dict[str, Any], template: dict[str, Any]) -> str | None:
        """The revision a template creates, or None when nothing about it changed."""
        config = {k: v for k, v in _pruned(template).items() if k != "revision"}
        wanted = template.get("revision")
        existing = self.revisions[name].get(wanted) if wanted else None
        if existing is not None:
            if existing["_config"] != config:
                raise ApiError(
                    409,
                    f"Revision named '{wanted}' with different configuration already exists.",
                    status="ALREADY_EXISTS",
                )
            return None
        old = {k: v for k, v in current["template"].items() if k != "revision"}
        if not wanted and config == old:
            return None
        short = name.rsplit("/", 1)[-1]
        return wanted or f"{short}-{len(self.revisions[name]) + 1:05d}-xyz"

    def _new_revision(self, name: str, revision: str) -> str | None:
        """Create the revision; returns the failure message if it is one that fails its Ready condition."""
        service = self.services[name]
        config = {k: v for k, v in service["template"].items() if k != "revision"}
        ready: dict[str, Any] = {"type": "Ready", "state": "CONDITION_SUCCEEDED"}
        failure = self.revision_failures.pop(0) if self.revision_failures else None
        if failure:
            ready = {"type": "Ready", "state": "CONDITION_FAILED", "message": failure[0], "revisionReason": failure[1]}
        elif self.ready_after_polls:
            ready = {"type": "Ready", "state": "CONDITION_RECONCILING"}
        self.revisions[name][revision] = {
            "name": f"{name}/revisions/{revision}",
            "service": name.rsplit("/", 1)[-1],
            "containers": copy.deepcopy(config.get("containers", [])),
            "createTime": _now(),
            "reconciling": ready["state"] == "CONDITION_RECONCILING",
            "conditions": [ready],
            "_config": copy.deepcopy(config),
            "_polls_until_ready": 0 if failure else self.ready_after_polls,
        }
        service["latestCreatedRevision"] = f"{name}/revisions/{revision}"
        if not failure:  # a failed revision never becomes the latest ready one
            service["latestReadyRevision"] = f"{name}/revisions/{revision}"
        return failure[0] if failure else None

    def _checked_traffic(
        self, name: str, traffic: list[dict[str, Any]], also: str | None = None
    ) -> list[dict[str, Any]]:
        targets = []
        for target in traffic:
            target = dict(target)
            kind = target.get("type", 0)
            target["type"] = _TRAFFIC_TYPES.get(kind, kind) if isinstance(kind, int) else kind
            known = target.get("revision") in self.revisions[name] or target.get("revision") == also
            if target["type"] == _REVISION and not known:
                raise ApiError(400, f"Revision '{target.get('revision')}' referenced in traffic does not exist.")
            targets.append(target)
        total = sum(t.get("percent", 0) for t in targets)
        if targets and total != 100:
            raise ApiError(400, f"Traffic percentages must add up to 100, got {total}.")
        return targets or [{"type": _LATEST, "percent": 100}]

    def _commit(self, name: str, failure: str | None = None) -> None:
        """A new generation; a failed reconciliation keeps the last serving traffic (as Cloud Run reports it)."""
        service = self.services[name]
        generation = int(service["generation"]) + 1
        latest = service["latestReadyRevision"].rsplit("/", 1)[-1]
        service.update(
            generation=str(generation), observedGeneration=str(generation), etag=f'"{generation}"', updateTime=_now()
        )
        if failure:
            service["terminalCondition"] = {"type": "Ready", "state": "CONDITION_FAILED", "message": failure}
            return
        service.update(
            terminalCondition={"type": "Ready", "state": "CONDITION_SUCCEEDED"},
            trafficStatuses=[
                {
                    "type": t["type"],
                    "revision": t.get("revision") or latest,
                    "percent": t.get("percent", 0),
                    "tag": t.get("tag", ""),
                }
                for t in service["traffic"]
            ],
        )

    def _operation(self, name: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        parent = name.rsplit("/services/", 1)[0]
        op_name = f"{parent}/operations/op-{next(self._ids)}"
        snapshot = dict(copy.deepcopy(self.services[name]), **{"@type": SERVICE_TYPE})
        self.operations[op_name] = {"snapshot": snapshot, "polls_left": self.lro_polls, "error": error}
        return {"name": op_name, "done": False, "metadata": snapshot}

    def _poll(self, op_name: str) -> dict[str, Any]:
        op = self.operations.get(op_name)
        if op is None:
            raise ApiError(404, f"Operation {op_name} not found.")
        if op["polls_left"] > 0:
            op["polls_left"] -= 1
            return {"name": op_name, "done": False, "metadata": op["snapshot"]}
        if op["error"]:
            return {"name": op_name, "done": True, "metadata": op["snapshot"], "error": op["error"]}
        return {"name": op_name, "done": True, "metadata": op["snapshot"], "response": op["snapshot"]}


class CloudSqlState:
    """Instances, backup runs and operations of the Cloud SQL stand-in."""

    def __init__(self, lro_polls: int) -> None:
        self.lro_polls = lro_polls
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.backups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.operations: dict[tuple[str, str], dict[str, Any]] = {}
        self.rejected: list[tuple[str, str]] = []  # (instance, method) answered with 409
        self.unlisted_busy: dict[tuple[str, str], int] = {}  # 409s to give with no operation listed
        self.operation_failures: list[dict[str, str]] = []  # errors the next operations end with
        self.failing_replicas: set[str] = set()  # replica names whose creation ends FAILED
        self._ids = itertools.count(1)

    def seed(
        self, project: str, instance: str, *, tier: str = "db-custom-1-3840", database_version: str = "POSTGRES_15"
    ) -> None:
        self.instances[(project, instance)] = {
            "kind": "sql#instance",
            "name": instance,
            "project": project,
            "state": "RUNNABLE",
            "databaseVersion": database_version,
            "settings": {"tier": tier, "settingsVersion": "1"},
        }
        self.backups[(project, instance)] = []

    def start_operation(self, project: str, instance: str, operation_type: str, polls: int) -> str:
        """An operation someone else started (e.g. an automated backup); done after ``polls`` polls."""
        return self._new_operation(project, instance, operation_type, polls)["name"]

    def fail_next_operation(self, message: str, code: str = "INTERNAL_ERROR") -> None:
        """The next operation started ends DONE with this error (a backup run it made ends FAILED)."""
        self.operation_failures.append({"kind": "sql#operationError", "code": code, "message": message})

    def busy_without_operation(self, project: str, instance: str, times: int) -> None:
        """Answer the next ``times`` mutating calls with 409 while listing no operation (Google-side work)."""
        self.unlisted_busy[(project, instance)] = times

    # -- request handling -------------------------------------------------------------------------

    def get(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        if m := _SQL_INSTANCE.match(path):
            return self._instance(m[1], m[2])
        if m := _SQL_BACKUPS.match(path):
            self._instance(m[1], m[2])
            limit = int(query.get("maxResults", ["1000"])[0])
            return {"kind": "sql#backupRunsList", "items": self.backups[(m[1], m[2])][:limit]}
        if m := _SQL_BACKUP.match(path):
            self._instance(m[1], m[2])
            for run in self.backups[(m[1], m[2])]:
                if run["id"] == m[3]:
                    # the backup progresses whether or not anyone polls its operation
                    for (project, name), op in self.operations.items():
                        if project == m[1] and op.get("backupContext", {}).get("backupId") == run["id"]:
                            self._poll(project, name)
                    return run
            raise ApiError(404, f"Backup run {m[3]} does not exist.", reason="backupRunDoesNotExist")
        if m := _SQL_OPERATIONS.match(path):
            instance = query.get("instance", [None])[0]
            ops = [self._public(op) for (p, _), op in self.operations.items() if p == m[1]]
            return {"kind": "sql#operationsList", "items": [op for op in reversed(ops) if op["targetId"] == instance]}
        if m := _SQL_OPERATION.match(path):
            return self._poll(m[1], m[2])
        raise ApiError(404, f"unknown path {path}")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        m = _SQL_BACKUPS.match(path)
        if not m:
            raise ApiError(404, f"unknown path {path}")
        project, instance = m[1], m[2]
        self._ensure_idle(project, instance, "backupRuns.insert")
        backup_id = str(next(self._ids))
        op = self._new_operation(project, instance, "BACKUP_VOLUME", self.lro_polls, backup_id=backup_id)
        self.backups[(project, instance)].insert(
            0,
            {
                "kind": "sql#backupRun",
                "id": backup_id,
                "instance": instance,
                "status": "RUNNING",
                "type": "ON_DEMAND",
                "description": body.get("description", ""),
                "startTime": _now(),
            },
        )
        return self._public(op)

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        m = _SQL_INSTANCE.match(path)
        if not m:
            raise ApiError(404, f"unknown path {path}")
        project, instance = m[1], m[2]
        found = self._instance(project, instance)
        self._ensure_idle(project, instance, "instances.patch")
        settings = dict(body.get("settings", {}))
        if "userLabels" in settings:  # a map field: merged key by key, null removes the key
            labels = {**found["settings"].get("userLabels", {}), **settings.pop("userLabels")}
            found["settings"]["userLabels"] = {k: v for k, v in labels.items() if v is not None}
        found["settings"].update(settings)  # patch semantics: merge
        found["settings"]["settingsVersion"] = str(int(found["settings"]["settingsVersion"]) + 1)
        return self._public(self._new_operation(project, instance, "UPDATE", self.lro_polls))

    # -- helpers -------------------------------------------------------------------------------------

    def _instance(self, project: str, instance: str) -> dict[str, Any]:
        found = self.instances.get((project, instance))
        if found is None:
            raise ApiError(404, "The Cloud SQL instance does not exist.", reason="instanceDoesNotExist")
        return found

    def _ensure_idle(self, project: str, instance: str, method: str) -> None:
        self._instance(project, instance)
        unlisted = self.unlisted_busy.get((project, instance), 0)
        self.unlisted_busy[(project, instance)] = max(unlisted - 1, 0)
        if unlisted or any(op["targetId"] == instance and op["status"] != "DONE" for op in self.operations.values()):
            self.rejected.append((instance, method))
            raise ApiError(
                409,
                "Operation failed because another operation was already in progress.",
                status="ABORTED",
                reason="operationInProgress",
            )

    def _new_operation(
        self, project: str, instance: str, operation_type: str, polls: int, backup_id: str | None = None
    ) -> dict[str, Any]:
        name = f"op-{next(self._ids):06d}"
        op: dict[str, Any] = {
            "kind": "sql#operation",
            "name": name,
            "operationType": operation_type,
            "status": "PENDING",
            "targetId": instance,
            "targetProject": project,
            "insertTime": _now(),
            "_polls_left": polls,
            "_error": self.operation_failures.pop(0) if self.operation_failures else None,
        }
        if backup_id:
            op["backupContext"] = {"kind": "sql#backupContext", "backupId": backup_id}
        self.operations[(project, name)] = op
        return op

    def _poll(self, project: str, name: str) -> dict[str, Any]:
        op = self.operations.get((project, name))
        if op is None:
            raise ApiError(404, f"The operation {name} does not exist.", reason="operationDoesNotExist")
        if op["_polls_left"] > 0:
            op["_polls_left"] -= 1
            op["status"] = "RUNNING"
        elif op["status"] != "DONE":
            op.update(status="DONE", endTime=_now())
            if op["_error"]:
                op["error"] = {"kind": "sql#operationErrors", "errors": [op["_error"]]}
            if on_done := op.pop("_on_done", None):
                on_done(op)
            backup_id = op.get("backupContext", {}).get("backupId")
            for run in self.backups.get((project, op["targetId"]), []):
                if run["id"] == backup_id:
                    run.update(status="FAILED" if op["_error"] else "SUCCESSFUL", endTime=op["endTime"])
        return self._public(op)

    @staticmethod
    def _public(op: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in op.items() if not k.startswith("_")}

    # -- replicas: instances.list / insert (masterInstanceName) / promoteReplica / delete -------------------

    def replicas(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The replica calls; None for any other request (the handlers above answer those)."""
        if method == "GET" and (m := _SQL_INSTANCES.match(path)):
            return {"kind": "sql#instancesList", "items": [i for (p, _), i in self.instances.items() if p == m[1]]}
        if method == "POST" and (m := _SQL_INSTANCES.match(path)):
            return self._insert(m[1], body)
        if method == "POST" and (m := _SQL_PROMOTE.match(path)):
            return self._promote(m[1], m[2])
        if method == "DELETE" and (m := _SQL_INSTANCE.match(path)):
            self._ensure_idle(m[1], m[2], "instances.delete")
            op = self._new_operation(m[1], m[2], "DELETE", self.lro_polls)
            op["_on_done"] = lambda _op, key=(m[1], m[2]): self.instances.pop(key, None)
            return self._public(op)
        return None

    def _insert(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        name, master = body.get("name"), body.get("masterInstanceName")
        tier = body.get("settings", {}).get("tier")
        if not name or not tier:
            raise ApiError(400, "Invalid request: name and settings.tier are required.", reason="invalid")
        if (project, name) in self.instances:
            raise ApiError(409, f"The Cloud SQL instance {name} already exists.", reason="instanceAlreadyExists")
        primary = self._instance(project, master) if master else None
        self.instances[(project, name)] = {
            "kind": "sql#instance",
            "name": name,
            "project": project,
            "state": "PENDING_CREATE",
            "region": body.get("region"),
            "databaseVersion": body.get("databaseVersion") or (primary or {}).get("databaseVersion"),
            "settings": {"tier": tier, "settingsVersion": "1"},
            **({"masterInstanceName": master, "instanceType": "READ_REPLICA_INSTANCE"} if master else {}),
        }
        self.backups[(project, name)] = []
        if primary is not None:
            primary.setdefault("replicaNames", []).append(name)
        op = self._new_operation(project, name, "CREATE_REPLICA" if master else "CREATE", self.lro_polls)

        def ready(op: dict[str, Any]) -> None:
            if name in self.failing_replicas:
                self.instances[(project, name)]["state"] = "FAILED"
                op["error"] = {"errors": [{"code": "INTERNAL_ERROR", "message": "replica failed to start"}]}
            else:
                self.instances[(project, name)]["state"] = "RUNNABLE"

        op["_on_done"] = ready
        return self._public(op)

    def _promote(self, project: str, replica: str) -> dict[str, Any]:
        found = self._instance(project, replica)
        if not found.get("masterInstanceName"):
            raise ApiError(400, f"{replica} is not a read replica.", reason="notAReplica")
        self._ensure_idle(project, replica, "instances.promoteReplica")
        primary = self.instances.get((project, found.pop("masterInstanceName")))
        if primary is not None:
            primary["replicaNames"] = [n for n in primary.get("replicaNames", []) if n != replica]
        found["instanceType"] = "CLOUD_SQL_INSTANCE"
        return self._public(self._new_operation(project, replica, "PROMOTE_REPLICA", self.lro_polls))


class StandIn(BackgroundServer):
    """Both APIs on one loopback port: Cloud Run under ``/v2/``, Cloud SQL Admin under ``/v1/``."""

    def __init__(
        self,
        *,
        lro_polls: int = 1,
        etag_status: int = 409,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: TokenAuthority | None = None,
    ) -> None:
        self.host, self.port = host, port  # tests: loopback and a free port; the compose stack: 0.0.0.0:8086
        self.run = CloudRunState(lro_polls, etag_status)
        self.sql = CloudSqlState(lro_polls)
        # With an authority, API calls need its tokens (401 otherwise) and it answers the token calls.
        self.auth = auth
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.principals: list[str | None] = []  # who sent each API request (with ``auth``)
        self.failures: list[int] = []  # HTTP statuses for the next API requests (transient errors)
        self._lock = threading.Lock()

    def fail_next(self, *statuses: int) -> None:
        """Answer the next API requests with these statuses (429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE …)."""
        self.failures.extend(statuses)

    @property
    def endpoint(self) -> str:
        return self.url

    def extra(self, project: str) -> dict[str, Any]:
        """The connection extra that points dbopt's hooks here."""
        return {"project": project, "endpoint": self.endpoint, "anonymous": True}

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def handle(
        self, method: str, raw_path: str, raw: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        url = urlparse(raw_path)
        query = parse_qs(url.query)
        headers = headers or {}
        with self._lock:
            if self.auth is not None and (answer := self.auth.handle(method, url.path, headers, raw)):
                return answer
            self.requests.append((method, url.path))
            try:
                if self.auth is not None:
                    principal = self.auth.principal(authorization(headers))
                    self.principals.append(principal)
                    if principal is None:
                        raise ApiError(401, "Request had invalid authentication credentials.")
                if self.failures:
                    raise ApiError(self.failures.pop(0), "The service is currently unavailable.")
                body = json.loads(raw) if raw else {}
                if url.path.startswith("/v2/"):
                    if method == "GET":
                        return 200, self.run.get(url.path)
                    if method == "PATCH":
                        return 200, self.run.patch(url.path, query, body)
                elif url.path.startswith("/v1/"):
                    if (answer := self.sql.replicas(method, url.path, body)) is not None:
                        return 200, answer
                    if method == "GET":
                        return 200, self.sql.get(url.path, query)
                    if method == "POST":
                        return 200, self.sql.post(url.path, body)
                    if method == "PATCH":
                        return 200, self.sql.patch(url.path, body)
                raise ApiError(404, f"{method} {url.path} is not served by the stand-in")
            except ApiError as err:
                return err.code, err.body()


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests assert on stand_in.requests
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload = stand_in.handle(self.command, self.path, raw, dict(self.headers))
            data = json.dumps(payload, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve the stand-in until interrupted, seeded with the services and instances named."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dbopt.cloud.standin", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8086)
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="PROJECT/REGION/NAME",
        help="a Cloud Run service with one serving revision (repeatable)",
    )
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="container env of every --service's first revision (repeatable)")  # fmt: skip
    parser.add_argument("--instance", action="append", default=[], metavar="PROJECT/NAME",
                        help="a Cloud SQL instance (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    if bad := [item for item in args.env if "=" not in item]:
        parser.error(f"--env {bad[0]!r}: expected KEY=VALUE, e.g. DB_POOL_SIZE=10")
    env = dict(item.split("=", 1) for item in args.env)
    standin = StandIn(host=args.host, port=args.port)
    for item in args.service:
        project, region, name = item.split("/")
        standin.run.seed(project, region, name, env=env)
    for item in args.instance:
        project, name = item.split("/")
        standin.sql.seed(project, name)
    standin.start()
    print(f"dbopt stand-in serving Cloud Run v2 and Cloud SQL Admin v1 at {standin.endpoint}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
