"""Cloud Run services through the real Admin API v2 client: canary deploys, traffic, service-level scaling.

Canary recipe (as ``gcloud run deploy --no-traffic --tag canary`` then ``update-traffic``):
1. ``deploy``: new template with an explicit revision name ``{service}-{suffix}``, tagged ``canary`` at 0%;
   traffic that followed LATEST is pinned to the revision serving it, so nothing moves yet. The deploy
   waits for the revision's Ready condition and reports its message when the revision failed;
2. ``shift_traffic``: the new revision gets N% (repeatable: 10, 25, 50 …), the others share the rest;
   then ``promote`` (LATEST 100%) or ``rollback`` (previous 100%).
Traffic edits keep every target and tag they do not own (``dbopt.cloud.traffic``). Every write sends the
etag read just before; on a 409 ABORTED / 412 conflict the service is re-read and the change re-applied, a
bounded number of times. Transient errors (429, 500, 502, 503, 504) are retried with exponential backoff.
Changes that are already in place are not sent again (idempotent).
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core.future import polling
from google.auth.exceptions import GoogleAuthError
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from dbopt.cloud import traffic
from dbopt.cloud.deployment import CANARY_TAG, Deployment, revision_name
from dbopt.cloud.gcp import CloudError, GcpSettings
from dbopt.targets.base import Data

log = logging.getLogger(__name__)

ALLOCATION = run_v2.TrafficTargetAllocationType
READY = run_v2.Condition.State
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# RESOURCE_EXHAUSTED (429), INTERNAL (500), 502, UNAVAILABLE (503), DEADLINE_EXCEEDED (504): worth another try.
TRANSIENT = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
)


class RevisionNotReady(CloudError):
    """The new revision failed its Ready condition (bad image, crash at start, failed health check …)."""


class ConcurrentModificationError(CloudError):
    """The service kept changing between our read and our write (etag conflicts) until we gave up."""


@dataclass(frozen=True)
class TrafficShare(Data):
    revision: str  # short revision id, e.g. "api-3f2a9c1d"
    percent: int
    tag: str = ""
    latest: bool = False  # routed as "latest ready revision" rather than pinned by name


@dataclass(frozen=True)
class ServiceState(Data):
    project: str
    region: str
    service: str
    etag: str
    image: str
    env: dict[str, str]
    latest_ready_revision: str
    traffic: tuple[TrafficShare, ...]
    min_instances: int
    max_instances: int  # 0 = no service-level limit

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["traffic"] = list(data["traffic"])  # JSON arrays, not tuples, in XCom
        return data

    def serving_revision(self, *, exclude_tag: str = CANARY_TAG, exclude_revision: str = "") -> str | None:
        """The revision holding the most traffic that is not the canary (ties: first listed)."""
        candidates = [
            t for t in self.traffic if t.percent > 0 and t.tag != exclude_tag and t.revision != exclude_revision
        ]
        return max(candidates, key=lambda t: t.percent).revision if candidates else None


@dataclass(frozen=True)
class RevisionState(Data):
    revision: str  # short id
    ready: bool  # its Ready condition succeeded
    image: str
    env: dict[str, str]  # plain values of the first container (secret references left out)


class CloudRun:
    """Cloud Run services of one project, any region."""

    def __init__(
        self,
        services: run_v2.ServicesClient,
        revisions: run_v2.RevisionsClient,
        project: str,
        *,
        conflict_retries: int = 3,
        timeout_s: float = 600.0,
        poll_s: float = 1.0,
        backoff_s: float = 1.0,
        retry_timeout_s: float = 120.0,
    ) -> None:
        self._services = services
        self._revisions = revisions
        self.project = project
        self.conflict_retries = conflict_retries
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._polling = polling.DEFAULT_POLLING.with_delay(initial=poll_s, maximum=poll_s * 10)
        self._retry = gretry.Retry(
            predicate=gretry.if_exception_type(*TRANSIENT),
            initial=backoff_s,
            maximum=backoff_s * 32,
            multiplier=2.0,
            timeout=retry_timeout_s,
            on_error=lambda err: log.warning("Cloud Run call failed (%s); retrying", err),
        )

    @classmethod
    def connect(cls, settings: GcpSettings, **options: Any) -> CloudRun:
        """Real clients over REST; ``settings.endpoint`` may be a plain-HTTP local stand-in."""
        credentials = settings.credentials()
        client_options = {"api_endpoint": settings.endpoint} if settings.endpoint else None
        services = run_v2.ServicesClient(transport="rest", credentials=credentials, client_options=client_options)
        revisions = run_v2.RevisionsClient(transport="rest", credentials=credentials, client_options=client_options)
        return cls(services, revisions, settings.project, **options)

    def service_path(self, service: str, region: str) -> str:
        return f"projects/{self.project}/locations/{region}/services/{service}"

    def describe(self, service: str, region: str) -> ServiceState:
        return self._state(self._get(self.service_path(service, region)))

    def revision(self, service: str, region: str, revision: str) -> RevisionState | None:
        """A revision's readiness and first container; None when it does not exist."""
        found = self._revision(self.service_path(service, region), revision)
        if found is None:
            return None
        ready = _ready(found)
        container = found.containers[0] if found.containers else None
        return RevisionState(
            revision=revision,
            ready=ready is not None and ready.state == READY.CONDITION_SUCCEEDED,
            image=container.image if container else "",
            env=_plain_env(container),
        )

    def deploy(
        self,
        service: str,
        region: str,
        *,
        run_id: str,
        env: Mapping[str, str] | None = None,
        image: str | None = None,
    ) -> Deployment:
        """Create revision ``{service}-{suffix}`` with the env/image change; traffic stays on the current one."""
        env = _check_env(env or {})
        if not env and not image:
            raise CloudError(f"{service}: nothing to deploy; give env changes and/or an image")
        new_revision = revision_name(service, env, image, run_id, region)
        path = self.service_path(service, region)
        previous: list[str] = []  # set by the attempt that succeeds

        def change(svc: run_v2.Service) -> bool:
            state = self._state(svc)
            previous.clear()
            if self._revision(path, new_revision) is not None:
                # A retry after a crash: the revision is there (ready or not, checked below).
                serving = state.serving_revision(exclude_revision=new_revision)
                if serving is None:
                    raise CloudError(f"{path}: revision {new_revision} exists but no other revision serves traffic")
                previous.append(serving)
                return False
            serving = state.serving_revision()
            if serving is None:
                raise CloudError(f"{path}: no revision serves traffic; deploy the service once before a canary")
            if not svc.template.containers:
                raise CloudError(f"{path}: the service template has no container")
            previous.append(serving)
            container = svc.template.containers[0]
            if image:
                container.image = image
            _merge_env(container, env)
            svc.template.revision = new_revision
            # --no-traffic: what followed LATEST stays on the revision serving it; the canary gets its tag.
            pinned = traffic.pin_latest(map(_plain, svc.traffic), state.latest_ready_revision)
            svc.traffic = _protos(traffic.edit(pinned, update_tags={CANARY_TAG: new_revision}))
            return True

        try:
            self._update(path, change, mask=None)
        except CloudError:
            self._raise_if_failed(path, new_revision)  # the revision's own reason beats the operation's
            raise
        self.wait_ready(path, new_revision)
        deployment = Deployment(self.project, region, service, previous[0], new_revision)
        log.info("deployed %s (traffic stays on %s)", new_revision, deployment.previous_revision)
        return deployment

    def wait_ready(self, service_path: str, revision: str) -> None:
        """Until the revision's Ready condition succeeds; RevisionNotReady with its message if it failed."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            found = self._revision(service_path, revision)
            if found is None:
                raise CloudError(f"{service_path}: revision {revision} does not exist")
            ready = _ready(found)
            if ready is not None and ready.state == READY.CONDITION_SUCCEEDED:
                return
            self._raise_if_failed(service_path, revision, found)
            if time.monotonic() >= deadline:
                state = ready.state.name if ready is not None else "no Ready condition"
                raise CloudError(f"{service_path}: revision {revision} not ready after {self.timeout_s:g}s ({state})")
            time.sleep(self.poll_s)

    def shift_traffic(self, deployment: Deployment, percent: int, *, tag: str = CANARY_TAG) -> ServiceState:
        """``percent`` to the new revision (tagged: its own URL); the revisions holding the rest keep it pro rata."""
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise CloudError(f"traffic percent must be an integer 0..100, got {percent!r}")

        def targets(svc: run_v2.Service) -> list[dict[str, Any]]:
            current = list(map(_plain, svc.traffic))
            return traffic.edit(
                current, percents={deployment.new_revision: percent}, update_tags={tag: deployment.new_revision}
            )

        state = self._set_traffic(deployment.service, deployment.region, targets)
        log.info("traffic %s: %s", deployment.service, _describe_traffic(state))
        return state

    def promote(self, deployment: Deployment) -> ServiceState:
        """All traffic to LATEST (the service follows new deploys again), if LATEST is our revision."""
        current = self.describe(deployment.service, deployment.region)
        if current.latest_ready_revision != deployment.new_revision:
            raise CloudError(
                f"{deployment.service}: latest ready revision is {current.latest_ready_revision}, not "
                f"{deployment.new_revision}; another deploy happened, promote it explicitly or roll back"
            )
        state = self._set_traffic(
            deployment.service,
            deployment.region,
            lambda svc: traffic.edit(map(_plain, svc.traffic), latest=100, remove_tags=[CANARY_TAG]),
        )
        log.info("promoted %s: %s", deployment.new_revision, _describe_traffic(state))
        return state

    def rollback(self, service: str, region: str, previous_revision: str | None = None) -> ServiceState:
        """All traffic to ``previous_revision``, or to the revision now holding the non-canary traffic."""
        path = self.service_path(service, region)

        def targets(svc: run_v2.Service) -> list[dict[str, Any]]:
            revision = previous_revision or self._state(svc).serving_revision()
            if revision is None:
                raise CloudError(f"{path}: no previous revision recorded and none serves traffic; name one")
            return traffic.edit(map(_plain, svc.traffic), percents={revision: 100}, remove_tags=[CANARY_TAG])

        state = self._set_traffic(service, region, targets)
        log.info("rolled back %s: %s", service, _describe_traffic(state))
        return state

    def set_scaling(self, service: str, region: str, min_instances: int, max_instances: int) -> ServiceState:
        """Service-level min/max instances (applies without a new revision)."""
        if not (isinstance(min_instances, int) and isinstance(max_instances, int)) or not (
            0 <= min_instances <= max_instances and max_instances >= 1
        ):
            raise CloudError(
                f"{service}: need 0 <= min <= max and max >= 1, got min={min_instances} max={max_instances}"
            )

        def change(svc: run_v2.Service) -> bool:
            if (svc.scaling.min_instance_count, svc.scaling.max_instance_count) == (min_instances, max_instances):
                return False
            svc.scaling.min_instance_count = min_instances
            svc.scaling.max_instance_count = max_instances
            return True

        return self._state(self._update(self.service_path(service, region), change, mask=["scaling"]))

    # -- plumbing -------------------------------------------------------------------------------

    def _set_traffic(
        self, service: str, region: str, targets: Callable[[run_v2.Service], list[dict[str, Any]]]
    ) -> ServiceState:
        def change(svc: run_v2.Service) -> bool:
            wanted = targets(svc)
            if traffic.same(map(_plain, svc.traffic), wanted):
                return False
            svc.traffic = _protos(wanted)
            return True

        return self._state(self._update(self.service_path(service, region), change, mask=["traffic"]))

    def _get(self, path: str) -> run_v2.Service:
        with _calling(path):
            try:
                return self._services.get_service(name=path, retry=self._retry)
            except gexc.NotFound as err:
                raise CloudError(f"Cloud Run service {path} does not exist; check service, region and project") from err

    def _revision(self, service_path: str, revision: str) -> run_v2.Revision | None:
        with _calling(service_path):
            try:
                return self._revisions.get_revision(name=f"{service_path}/revisions/{revision}", retry=self._retry)
            except gexc.NotFound:
                return None

    def _raise_if_failed(self, service_path: str, revision: str, found: run_v2.Revision | None = None) -> None:
        found = found or self._revision(service_path, revision)
        ready = _ready(found) if found is not None else None
        if ready is not None and ready.state == READY.CONDITION_FAILED:
            raise RevisionNotReady(
                f"{service_path}: revision {revision} did not become ready: {ready.message or '(no message)'}"
                + (f" [{_reason(ready)}]" if _reason(ready) else "")
                + "; traffic stays on the previous revision"
            )

    def _update(self, path: str, change: Callable[[run_v2.Service], bool], *, mask: list[str] | None) -> run_v2.Service:
        """Read, let ``change`` edit (False = already as wanted), write with the etag; retry on conflicts."""
        last: gexc.GoogleAPICallError | None = None
        for attempt in range(1, self.conflict_retries + 2):
            svc = self._get(path)
            if not change(svc):
                return svc
            request = run_v2.UpdateServiceRequest(
                service=svc, update_mask=field_mask_pb2.FieldMask(paths=mask) if mask else None
            )
            try:
                with _calling(path):
                    operation = self._services.update_service(request=request, retry=self._retry)
                    return operation.result(timeout=self.timeout_s, polling=self._polling, retry=self._retry)
            except (gexc.Conflict, gexc.PreconditionFailed) as err:
                last = err
                log.warning("%s changed concurrently (attempt %d: %s); re-reading", path, attempt, err.message)
            except concurrent.futures.TimeoutError as err:
                raise CloudError(f"{path}: update did not finish within {self.timeout_s:.0f}s") from err
            except gexc.GoogleAPICallError as err:
                raise CloudError(f"{path}: update failed: {err.message}") from err
        raise ConcurrentModificationError(
            f"{path}: the service kept changing while we updated it ({self.conflict_retries + 1} attempts, "
            f"last error: {last.message if last else '?'}); another deploy or scaling job may be running, "
            "retry when it is done"
        )

    def _state(self, svc: run_v2.Service) -> ServiceState:
        _, project, _, region, _, service = svc.name.split("/")
        container = svc.template.containers[0] if svc.template.containers else None
        resolved = svc.traffic_statuses or svc.traffic
        latest_ready = _short(svc.latest_ready_revision)
        traffic = tuple(
            TrafficShare(
                revision=_short(t.revision) or latest_ready,
                percent=t.percent,
                tag=t.tag,
                latest=t.type_ == ALLOCATION.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
            )
            for t in resolved
        )
        return ServiceState(
            project=project,
            region=region,
            service=service,
            etag=svc.etag,
            image=container.image if container else "",
            env=_plain_env(container),
            latest_ready_revision=latest_ready,
            traffic=traffic,
            min_instances=svc.scaling.min_instance_count,
            max_instances=svc.scaling.max_instance_count,
        )


@contextmanager
def _calling(path: str) -> Iterator[None]:
    """Failures that are not the API's answer, named for the caller."""
    try:
        yield
    except GoogleAuthError as err:
        raise CloudError(f"{path}: signing in to Google failed: {err}") from err
    except gexc.RetryError as err:
        raise CloudError(f"{path}: still failing after retries for {err}: {err.cause}") from err


def _plain_env(container: run_v2.Container | None) -> dict[str, str]:
    return {e.name: e.value for e in container.env if not e.value_source} if container else {}


def _ready(revision: run_v2.Revision) -> run_v2.Condition | None:
    return next((c for c in revision.conditions if c.type_ == "Ready"), None)


def _reason(condition: run_v2.Condition) -> str:
    """The condition's reason enum name (revision-specific first), or "" when unset."""
    for reason in (condition.revision_reason, condition.reason):
        if reason:
            return reason.name
    return ""


def _plain(t: run_v2.TrafficTarget) -> dict[str, Any]:
    latest = t.type_ == ALLOCATION.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
    kind = traffic.LATEST if latest else traffic.REVISION
    return {"type": kind, "revision": "" if latest else _short(t.revision), "percent": t.percent, "tag": t.tag}


def _protos(targets: list[dict[str, Any]]) -> list[run_v2.TrafficTarget]:
    return [
        run_v2.TrafficTarget(
            type_=ALLOCATION.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
            if t["type"] == traffic.LATEST
            else ALLOCATION.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=t["revision"],
            percent=t["percent"],
            tag=t["tag"],
        )
        for t in targets
    ]


def _describe_traffic(state: ServiceState) -> str:
    return ", ".join(f"{t.revision}={t.percent}%" + (f" [{t.tag}]" if t.tag else "") for t in state.traffic)


def _short(revision: str) -> str:
    return revision.rsplit("/", 1)[-1]


def _check_env(env: Mapping[str, Any]) -> dict[str, str]:
    bad = [name for name in env if not (isinstance(name, str) and _ENV_NAME.match(name))]
    if bad:
        raise CloudError(f"env: invalid variable name(s) {bad}; use letters, digits and _ (e.g. DB_POOL_SIZE)")
    return {name: str(value) for name, value in env.items()}


def _merge_env(container: run_v2.Container, env: Mapping[str, str]) -> None:
    """Set/replace the given variables; every other variable (and secret reference) is kept."""
    kept = [e for e in container.env if e.name not in env]
    container.env = kept + [run_v2.EnvVar(name=k, value=v) for k, v in env.items()]
