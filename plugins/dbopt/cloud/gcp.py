"""Where the Google APIs are and who we are, read from a connection extra the way the Airflow Google provider
reads it.

Fields (each also accepted with the provider's ``extra__google_cloud_platform__`` prefix): ``project``,
``key_path``, ``keyfile_dict``, ``credential_config_file``, ``scope`` (comma-separated), ``impersonation_chain``
(comma-separated; the last account is the one impersonated), ``num_retries``, ``is_anonymous``. dbopt adds
``endpoint`` (a local stand-in's URL) and keeps its older spelling ``anonymous``. Without any key field the
client libraries use Application Default Credentials. The provider itself is not a dependency (README,
"Dependencies"); this module mirrors its ``get_credentials_and_project_id``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from google.auth.credentials import AnonymousCredentials, Credentials

from dbopt.targets.base import Data

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
PREFIX = "extra__google_cloud_platform__"
DEFAULT_NUM_RETRIES = 5  # the provider's default
_KEY_FIELDS = ("key_path", "keyfile_dict", "credential_config_file", "is_anonymous")
_KNOWN = {"project", "endpoint", "anonymous", "scope", "impersonation_chain", "num_retries", *_KEY_FIELDS}
# Provider fields dbopt does not implement: refusing them beats silently using other credentials.
_UNSUPPORTED = {
    "key_secret_name": "read the key from Secret Manager into keyfile_dict (e.g. an Airflow secrets backend)",
    "key_secret_project_id": "read the key from Secret Manager into keyfile_dict (e.g. an Airflow secrets backend)",
    "idp_issuer_url": "put a file-sourced credential_config_file (workload identity federation) instead",
    "client_id": "put a file-sourced credential_config_file (workload identity federation) instead",
    "client_secret": "put a file-sourced credential_config_file (workload identity federation) instead",
    "idp_extra_params": "put a file-sourced credential_config_file (workload identity federation) instead",
}


class CloudError(Exception):
    """A Google Cloud control-plane call failed in a way the caller should report."""


class ConfigError(CloudError):
    """Settings for a Google API are missing or malformed."""


@dataclass(frozen=True)
class GcpSettings(Data):
    project: str
    endpoint: str | None = None  # e.g. "http://127.0.0.1:8123"; None = Google's public endpoints
    anonymous: bool = False  # local stand-ins only: send no credentials
    key_path: str | None = None
    keyfile_dict: dict[str, Any] | None = field(default=None, repr=False)  # a secret: never in logs
    credential_config_file: str | dict[str, Any] | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,)
    impersonation_chain: tuple[str, ...] = ()
    num_retries: int = DEFAULT_NUM_RETRIES

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], *, source: str, project: str | None = None) -> GcpSettings:
        """Read a connection extra; ``source`` names it in errors; ``project`` overrides the extra's."""
        fields = _unprefixed(extra, source)
        for name, fix in _UNSUPPORTED.items():
            if fields.get(name):
                raise ConfigError(f"{source}: field {name!r} is not supported by dbopt; {fix}")
        if fields.get("scopes"):
            raise ConfigError(f"{source}: unknown field 'scopes'; the provider's field is 'scope' (comma-separated)")
        given = [name for name in _KEY_FIELDS if fields.get(name)]
        if fields.get("anonymous") is True and "is_anonymous" not in given:
            given.append("is_anonymous")
        if len(given) > 1:
            raise ConfigError(f"{source}: fields {given} are mutually exclusive (as in the Google provider); keep one")
        anonymous = _flag(fields, "is_anonymous", source) or _flag(fields, "anonymous", source)
        endpoint = fields.get("endpoint") or None
        if endpoint is not None and not (isinstance(endpoint, str) and endpoint.startswith(("http://", "https://"))):
            raise ConfigError(f"{source}: field 'endpoint' must be a URL like http://127.0.0.1:8123, got {endpoint!r}")
        key_path = fields.get("key_path") or None
        if key_path is not None and not (isinstance(key_path, str) and key_path.endswith(".json")):
            raise ConfigError(f"{source}: field 'key_path' must name a JSON key file (*.json), got {key_path!r}")
        settings = cls(
            project=project or fields.get("project") or "",
            endpoint=endpoint.rstrip("/") if endpoint else None,
            anonymous=anonymous,
            key_path=key_path,
            keyfile_dict=_keyfile_dict(fields.get("keyfile_dict"), source),
            credential_config_file=fields.get("credential_config_file") or None,
            scopes=_list(fields.get("scope"), "scope", source) or (CLOUD_PLATFORM_SCOPE,),
            impersonation_chain=_list(fields.get("impersonation_chain"), "impersonation_chain", source),
            num_retries=_num_retries(fields.get("num_retries"), source),
        )
        if not settings.project and not anonymous:
            settings = replace(settings, project=settings._credentials(source)[1])
        if not settings.project or not isinstance(settings.project, str):
            raise ConfigError(f'{source}: field \'project\' is missing; add "project": "<gcp project id>" to the extra')
        return settings

    def credentials(self, scopes: tuple[str, ...] | None = None) -> Credentials:
        """Credentials for the configured key (or ADC), impersonating the chain's last account if one is set."""
        return self._credentials("connection", scopes)[0]

    def _credentials(self, source: str, scopes: tuple[str, ...] | None = None) -> tuple[Credentials, str]:
        if self.anonymous:
            return AnonymousCredentials(), ""
        import google.auth  # deferred: ADC may ask the metadata server
        from google.auth import exceptions, impersonated_credentials
        from google.oauth2 import service_account

        scopes = scopes or self.scopes
        try:
            if self.key_path:
                creds = service_account.Credentials.from_service_account_file(self.key_path, scopes=scopes)
                project = creds.project_id
            elif self.keyfile_dict:
                creds = service_account.Credentials.from_service_account_info(self.keyfile_dict, scopes=scopes)
                project = creds.project_id
            elif self.credential_config_file:
                creds, project = _from_credential_config(self.credential_config_file, scopes)
            else:
                creds, project = google.auth.default(scopes=list(scopes))
        except (OSError, ValueError, exceptions.DefaultCredentialsError) as err:
            raise ConfigError(f"{source}: cannot load the Google credentials: {err}") from err
        if self.impersonation_chain:
            target = self.impersonation_chain[-1]
            override = None
            if self.endpoint:  # a stand-in answers IAM Credentials too
                override = f"{self.endpoint}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"
            creds = impersonated_credentials.Credentials(
                source_credentials=creds,
                target_principal=target,
                delegates=list(self.impersonation_chain[:-1]) or None,
                target_scopes=list(scopes),
                iam_endpoint_override=override,
            )
            project = target.split("@", 1)[1].split(".", 1)[0] if "@" in target else project
        return creds, project or ""


def json_value(value: Any, where: str, fix: str, error: type[CloudError] = CloudError) -> Any:
    """JSON text parsed (anything else passes through); bad JSON raises ``error`` naming ``where`` and the fix."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise error(f"{where}: not valid JSON ({err}); {fix}") from None


def _unprefixed(extra: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Plain field names; the prefixed spelling counts where the plain one is absent (as the provider reads it)."""
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{source}: the extra must be a JSON object, got {type(extra).__name__}")
    fields = {k[len(PREFIX) :]: v for k, v in extra.items() if k.startswith(PREFIX)}
    fields.update({k: v for k, v in extra.items() if not k.startswith(PREFIX) and v not in (None, "")})
    return fields


def _flag(fields: Mapping[str, Any], name: str, source: str) -> bool:
    value = fields.get(name, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):  # the UI stores check boxes as text
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: field {name!r} must be true or false, got {value!r}")
    return value


def _list(value: Any, name: str, source: str) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise ConfigError(f"{source}: field {name!r} must be a comma-separated string or a list, got {value!r}")


def _keyfile_dict(value: Any, source: str) -> dict[str, Any] | None:
    if not value:
        return None
    value = json_value(value, f"{source}: field 'keyfile_dict'", "paste the key file's content", ConfigError)
    if not isinstance(value, dict) or "private_key" not in value:
        raise ConfigError(f"{source}: field 'keyfile_dict' must be a service-account key (with 'private_key')")
    # Keys pasted through some UIs carry escaped newlines; the provider turns them back.
    return {**value, "private_key": value["private_key"].replace("\\n", "\n")}


def _num_retries(value: Any, source: str) -> int:
    if value in (None, ""):
        return DEFAULT_NUM_RETRIES
    try:
        retries = int(value)
    except (TypeError, ValueError):
        retries = -1
    if retries < 0:
        raise ConfigError(f"{source}: field 'num_retries' must be an integer >= 0, got {value!r}")
    return retries


def _from_credential_config(config: str | dict[str, Any], scopes: tuple[str, ...]) -> tuple[Credentials, str | None]:
    """A credential configuration file: a path, its JSON text, or the parsed object (as the provider takes it)."""
    import google.auth
    from google.auth import aws, identity_pool, pluggable

    if isinstance(config, str) and os.path.exists(config):
        with open(config) as file:
            config = file.read()
    info = json.loads(config) if isinstance(config, str) else config
    if info.get("type") != "external_account":
        return google.auth.load_credentials_from_dict(info, scopes=list(scopes))
    # Built directly: google.auth's loader would ask Resource Manager for the project (a network call at
    # settings time); the project comes from the extra instead.
    source = info.get("credential_source", {})
    if str(source.get("environment_id", "")).startswith("aws"):
        kind: Any = aws.Credentials
    elif "executable" in source:
        kind = pluggable.Credentials
    else:
        kind = identity_pool.Credentials
    return kind.from_info(info, scopes=list(scopes)), None
