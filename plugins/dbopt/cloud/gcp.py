"""Where the Google APIs are and who we are: endpoint, project and credentials from plain settings.

A connection's extra such as ``{"project": "p", "endpoint": "http://127.0.0.1:8123", "anonymous": true}``
points the real client libraries at a local stand-in; without ``endpoint`` they talk to Google with
Application Default Credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.auth.credentials import AnonymousCredentials, Credentials

from dbopt.targets.base import Data

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class CloudError(Exception):
    """A Google Cloud control-plane call failed in a way the caller should report."""


class ConfigError(CloudError):
    """Settings for a Google API are missing or malformed."""


@dataclass(frozen=True)
class GcpSettings(Data):
    project: str
    endpoint: str | None = None  # e.g. "http://127.0.0.1:8123"; None = Google's public endpoint
    anonymous: bool = False  # True only for local stand-ins: send no credentials

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], *, source: str, project: str | None = None) -> GcpSettings:
        """Read ``project``/``endpoint``/``anonymous`` from a connection extra; ``source`` names it in errors."""
        project = project or extra.get("project")
        if not project and not extra.get("anonymous"):
            project = _default_project()
        if not project or not isinstance(project, str):
            raise ConfigError(f'{source}: field \'project\' is missing; add "project": "<gcp project id>" to the extra')
        endpoint = extra.get("endpoint") or None
        if endpoint is not None and not (isinstance(endpoint, str) and endpoint.startswith(("http://", "https://"))):
            raise ConfigError(f"{source}: field 'endpoint' must be a URL like http://127.0.0.1:8123, got {endpoint!r}")
        anonymous = extra.get("anonymous", False)
        if not isinstance(anonymous, bool):
            raise ConfigError(f"{source}: field 'anonymous' must be true or false, got {anonymous!r}")
        return cls(project=project, endpoint=endpoint.rstrip("/") if endpoint else None, anonymous=anonymous)

    def credentials(self) -> Credentials:
        if self.anonymous:
            return AnonymousCredentials()
        import google.auth  # deferred: ADC lookup may touch the metadata server

        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return credentials


def _default_project() -> str | None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])[1]
    except DefaultCredentialsError:
        return None
