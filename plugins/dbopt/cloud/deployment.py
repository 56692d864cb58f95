"""What a canary deploy changed (plain data, no Google import: DAG files and operators use it)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbopt.cloud.gcp import CloudError, json_value
from dbopt.targets.base import Data

CANARY_TAG = "canary"
# Revision names are RFC 1035 labels: lowercase letters, digits and hyphens, at most 63 characters.
_REVISION_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Deployment(Data):
    """What a deploy changed; enough to shift, promote or roll back later, even from another process."""

    project: str
    region: str
    service: str
    previous_revision: str
    new_revision: str

    @classmethod
    def from_value(cls, value: Mapping[str, Any] | str | None, *, source: str = "deployment") -> Deployment | None:
        """The deploy task's XCom (a dict, or JSON text after Jinja rendering); None when nothing was recorded."""
        if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
            return None
        value = json_value(value, source, "pass the deploy task's XCom (deploy.output)")
        if not isinstance(value, Mapping):
            raise CloudError(f"{source}: expected a mapping from the deploy task, got {type(value).__name__}")
        missing = [f for f in ("project", "region", "service", "previous_revision", "new_revision") if not value.get(f)]
        if missing:
            raise CloudError(f"{source}: missing {', '.join(missing)}; pass the deploy task's XCom (deploy.output)")
        return cls.from_dict(dict(value))


def revision_name(service: str, env: Mapping[str, str], image: str | None, run_id: str, region: str) -> str:
    """``{service}-{8 hex}`` from the change, the run id and the region: a retried run finds the revision it
    created, and the same change in two regions gets two names (metrics labelled by revision stay apart)."""
    change = json.dumps({"env": dict(env), "image": image, "run_id": run_id, "region": region}, sort_keys=True)
    name = f"{service}-{hashlib.sha256(change.encode()).hexdigest()[:8]}"
    if not _REVISION_NAME.match(name):
        raise CloudError(f"revision name {name!r} is not valid (service name too long or not lowercase?)")
    return name
