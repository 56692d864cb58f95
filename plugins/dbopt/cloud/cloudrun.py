"""Cloud Run services through the real Admin API v2 client: canary deploys, traffic, service-level scaling.

Canary recipe (two steps, so the new revision is never referenced before it exists):
1. ``deploy``: new template with an explicit revision name ``{service}-{suffix}``, traffic pinned 100% to the
   revision serving now;
2. ``shift_traffic``: previous ``100-N`` / new ``N`` tagged ``canary``; then ``promote`` (LATEST 100%) or
   ``rollback`` (previous 100%).
Every write sends the etag read just before; on a 409/412 conflict the service is re-read and the change
re-applied, a bounded number of times. Changes that are already in place are not sent again (idempotent).
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.future import polling
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from dbopt.cloud.deployment import CANARY_TAG, Deployment, revision_name
from dbopt.cloud.gcp import CloudError, GcpSettings
from dbopt.targets.base import Data

log = logging.getLogger(__name__)

ALLOCATION = run_v2.TrafficTargetAllocationType
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    ) -> None:
        self._services = services
        self._revisions = revisions
        self.project = project
        self.conflict_retries = conflict_retries
        self.timeout_s = timeout_s
        self._polling = polling.DEFAULT_POLLING.with_delay(initial=poll_s, maximum=poll_s * 10)

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
        new_revision = revision_name(service, env, image, run_id)
        path = self.service_path(service, region)
        previous: list[str] = []  # set by the attempt that succeeds

        def change(svc: run_v2.Service) -> bool:
            state = self._state(svc)
            previous.clear()
            if self._revision_exists(path, new_revision):
                # A retry after a crash: the revision is there, traffic is still on the previous one.
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
            svc.traffic = [_pinned(serving, 100)]
            return True

        self._update(path, change, mask=None)
        deployment = Deployment(self.project, region, service, previous[0], new_revision)
        log.info("deployed %s (traffic stays 100%% on %s)", new_revision, deployment.previous_revision)
        return deployment

    def shift_traffic(self, deployment: Deployment, percent: int, *, tag: str = CANARY_TAG) -> ServiceState:
        """Previous revision ``100-percent``, new revision ``percent`` with a tag (its own URL)."""
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise CloudError(f"traffic percent must be an integer 0..100, got {percent!r}")
        targets = [_pinned(deployment.previous_revision, 100 - percent), _pinned(deployment.new_revision, percent, tag)]
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
        latest = run_v2.TrafficTarget(type_=ALLOCATION.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100)
        state = self._set_traffic(deployment.service, deployment.region, [latest])
        log.info("promoted %s: %s", deployment.new_revision, _describe_traffic(state))
        return state

    def rollback(self, service: str, region: str, previous_revision: str | None = None) -> ServiceState:
        """All traffic to ``previous_revision``, or to the revision now holding the non-canary traffic."""
        path = self.service_path(service, region)

        def targets(svc: run_v2.Service) -> list[run_v2.TrafficTarget]:
            revision = previous_revision or self._state(svc).serving_revision()
            if revision is None:
                raise CloudError(f"{path}: no previous revision recorded and none serves traffic; name one")
            return [_pinned(revision, 100)]

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
        self,
        service: str,
        region: str,
        targets: list[run_v2.TrafficTarget] | Callable[[run_v2.Service], list[run_v2.TrafficTarget]],
    ) -> ServiceState:
        def change(svc: run_v2.Service) -> bool:
            wanted = targets(svc) if callable(targets) else targets
            if _traffic_key(svc.traffic) == _traffic_key(wanted):
                return False
            svc.traffic = wanted
            return True

        return self._state(self._update(self.service_path(service, region), change, mask=["traffic"]))

    def _get(self, path: str) -> run_v2.Service:
        try:
            return self._services.get_service(name=path)
        except gexc.NotFound as err:
            raise CloudError(f"Cloud Run service {path} does not exist; check service, region and project") from err

    def _revision_exists(self, service_path: str, revision: str) -> bool:
        try:
            self._revisions.get_revision(name=f"{service_path}/revisions/{revision}")
        except gexc.NotFound:
            return False
        return True

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
                operation = self._services.update_service(request=request)
                return operation.result(timeout=self.timeout_s, polling=self._polling)
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
            env={e.name: e.value for e in container.env if not e.value_source} if container else {},
            latest_ready_revision=latest_ready,
            traffic=traffic,
            min_instances=svc.scaling.min_instance_count,
            max_instances=svc.scaling.max_instance_count,
        )


def _pinned(revision: str, percent: int, tag: str = "") -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(
        type_=ALLOCATION.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, revision=revision, percent=percent, tag=tag
    )


def _traffic_key(targets: Any) -> list[tuple[int, str, int, str]]:
    return sorted((int(t.type_), t.revision, t.percent, t.tag) for t in targets)


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
