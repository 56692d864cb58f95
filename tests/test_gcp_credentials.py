"""Connection credentials as the Airflow Google provider reads them, through real google-auth flows.

Keys are generated here (RSA, signing only); the stand-in's token authority runs the JWT-bearer grant,
the STS exchange and IAM impersonation, and refuses API calls without its tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbopt.cloud.cloudrun import CloudRun
from dbopt.cloud.cloudsql import CloudSQL
from dbopt.cloud.gcp import CLOUD_PLATFORM_SCOPE, CloudError, ConfigError, GcpSettings
from dbopt.cloud.standin import StandIn
from dbopt.cloud.standin_auth import TokenAuthority
from dbopt.hooks.cloudrun import CloudRunHook
from dbopt.metrics.monitoring_standin import MonitoringStandIn, Request
from dbopt.metrics.sources import CloudMonitoringSource, MetricSourceError

PROJECT, REGION, SERVICE, INSTANCE = "ion-mentoring", "us-central1", "ion-api", "ion-db"
SA = f"dbopt@{PROJECT}.iam.gserviceaccount.com"
DEPLOYER = "deployer@ops-project.iam.gserviceaccount.com"
HOP = f"hop@{PROJECT}.iam.gserviceaccount.com"
SQL_SCOPE = "https://www.googleapis.com/auth/sqlservice.admin"


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority()


@pytest.fixture
def stand_in(authority: TokenAuthority) -> Iterator[StandIn]:
    with StandIn(lro_polls=0, auth=authority) as server:
        server.run.seed(PROJECT, REGION, SERVICE)
        server.run.seed("ops-project", REGION, SERVICE)
        server.sql.seed(PROJECT, INSTANCE)
        yield server


@pytest.fixture
def key(authority: TokenAuthority, stand_in: StandIn) -> dict[str, Any]:
    return authority.service_account_key(SA, PROJECT, f"{stand_in.endpoint}/token")


@pytest.fixture
def key_file(key: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "dbopt-sa.json"
    path.write_text(json.dumps(key))
    return str(path)


def _settings(stand_in: StandIn, **extra: Any) -> GcpSettings:
    return GcpSettings.from_extra({"endpoint": stand_in.endpoint, **extra}, source="conn 'gcp' extra")


def _describe(settings: GcpSettings) -> str:
    return CloudRun.connect(settings, poll_s=0.01).describe(SERVICE, REGION).latest_ready_revision


def test_key_path_signs_in_as_the_service_account_and_gives_the_project(stand_in: StandIn, key_file: str) -> None:
    settings = _settings(stand_in, key_path=key_file)
    assert settings.project == PROJECT  # from the key, as the provider does
    assert _describe(settings) == f"{SERVICE}-00001-abc"
    assert CloudSQL.connect(settings, poll_s=0.01).tier(INSTANCE)
    assert stand_in.principals == [SA, SA]


def test_keyfile_dict_pasted_with_escaped_newlines(stand_in: StandIn, key: dict[str, Any]) -> None:
    pasted = json.dumps(key).replace("\\n", "\\\\n")  # what a UI text field often stores
    settings = _settings(stand_in, keyfile_dict=pasted, project=PROJECT)
    assert "BEGIN PRIVATE KEY" not in repr(settings)  # the secret stays out of logs
    assert _describe(settings) and stand_in.principals == [SA]


def test_prefixed_fields_count_like_plain_ones(stand_in: StandIn, key_file: str) -> None:
    settings = GcpSettings.from_extra(
        {
            "extra__google_cloud_platform__key_path": key_file,
            "extra__google_cloud_platform__project": "other-project",
            "extra__google_cloud_platform__scope": SQL_SCOPE,
            "extra__google_cloud_platform__num_retries": "2",
            "endpoint": stand_in.endpoint,
        },
        source="t",
    )
    assert (settings.key_path, settings.project, settings.scopes, settings.num_retries) == (
        key_file,
        "other-project",
        (SQL_SCOPE,),
        2,
    )
    # the plain field wins over the prefixed one
    assert GcpSettings.from_extra({"project": "a", "extra__google_cloud_platform__project": "b", "is_anonymous": True},
                                  source="t").project == "a"  # fmt: skip


def test_scope_reaches_the_token_request(stand_in: StandIn, authority: TokenAuthority, key_file: str) -> None:
    settings = _settings(stand_in, key_path=key_file, scope=f"{SQL_SCOPE}, {CLOUD_PLATFORM_SCOPE}")
    CloudSQL.connect(settings, poll_s=0.01).tier(INSTANCE)
    assert authority.exchanges[-1] == {
        "flow": "jwt-bearer",
        "principal": SA,
        "scope": f"{SQL_SCOPE} {CLOUD_PLATFORM_SCOPE}",
    }


def test_impersonation_chain_acts_as_the_last_account(
    stand_in: StandIn, authority: TokenAuthority, key_file: str
) -> None:
    authority.allow_impersonation(SA, HOP)
    authority.allow_impersonation(HOP, DEPLOYER)
    settings = _settings(stand_in, key_path=key_file, impersonation_chain=f"{HOP},{DEPLOYER}")
    assert settings.project == "ops-project"  # the impersonated account's project, as the provider does
    assert _describe(settings)
    assert stand_in.principals == [DEPLOYER]
    assert authority.exchanges[-1]["chain"] == [SA, HOP, DEPLOYER]

    refused = _settings(stand_in, key_path=key_file, impersonation_chain=["someone@x.iam.gserviceaccount.com"])
    with pytest.raises(CloudError, match=r"signing in to Google failed: .*getAccessToken.* denied on someone@x"):
        _describe(refused)


@pytest.mark.parametrize("form", ["path", "text", "object"])
def test_credential_config_file_federates(
    stand_in: StandIn, authority: TokenAuthority, tmp_path: Path, form: str
) -> None:
    subject = tmp_path / "oidc-token"
    subject.write_text("ci-job-42")
    config = {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci/providers/gh",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{stand_in.endpoint}/v1/token",
        "credential_source": {"file": str(subject)},
    }
    path = tmp_path / "wif.json"
    path.write_text(json.dumps(config))
    value = {"path": str(path), "text": json.dumps(config), "object": config}[form]
    assert _describe(_settings(stand_in, credential_config_file=value, project=PROJECT))
    assert stand_in.principals == [
        "principal://projects/1/locations/global/workloadIdentityPools/ci/providers/gh/subject/ci-job-42"
    ]


def test_anonymous_is_refused_by_an_api_that_wants_credentials(stand_in: StandIn) -> None:
    with pytest.raises(CloudError, match=r"signing in to Google failed: .*Anonymous credentials cannot be refreshed"):
        _describe(_settings(stand_in, is_anonymous=True, project=PROJECT))


def test_bad_credential_fields_are_named(stand_in: StandIn, key_file: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fields \['key_path', 'is_anonymous'\] are mutually exclusive"):
        _settings(stand_in, key_path=key_file, anonymous=True)
    with pytest.raises(ConfigError, match="'keyfile_dict': not valid JSON"):
        _settings(stand_in, keyfile_dict="{not json")
    with pytest.raises(ConfigError, match="'key_path' must name a JSON key file"):
        _settings(stand_in, key_path="/keys/sa.p12")
    with pytest.raises(ConfigError, match=r"cannot load the Google credentials: .*missing\.json"):
        _settings(stand_in, key_path=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="'key_secret_name' is not supported by dbopt; read the key"):
        _settings(stand_in, key_secret_name="sa-key")
    with pytest.raises(ConfigError, match="the provider's field is 'scope'"):
        _settings(stand_in, scopes=[SQL_SCOPE], project=PROJECT)
    with pytest.raises(ConfigError, match="'num_retries' must be an integer >= 0"):
        _settings(stand_in, num_retries="many", project=PROJECT, is_anonymous=True)


def test_hook_uses_the_connections_key(stand_in: StandIn, key_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"extra__google_cloud_platform__key_path": key_file, "endpoint": stand_in.endpoint}
    monkeypatch.setenv("AIRFLOW_CONN_DBOPT_SA", json.dumps({"conn_type": "google_cloud_platform", "extra": extra}))
    assert CloudRunHook("dbopt_sa").client.describe(SERVICE, REGION).service == SERVICE
    assert stand_in.principals == [SA]


def test_cloud_monitoring_source_uses_the_connections_credentials(
    stand_in: StandIn, authority: TokenAuthority, key_file: str
) -> None:
    with MonitoringStandIn(authority=authority) as monitoring:
        monitoring.record([Request(t=0, revision="r", latency_ms=1, service=SERVICE, location=REGION)])
        source = CloudMonitoringSource(
            PROJECT,
            SERVICE,
            REGION,
            {"canary": "r"},
            endpoint=monitoring.url,
            credentials={"key_path": key_file, "endpoint": stand_in.endpoint},
            ingestion_delay_s=0,
        )
        source.query("request_rate", "canary", 120, end=600)
        assert monitoring.principals == [SA]  # requests and errors: one aligned query, signed in
        anonymous = CloudMonitoringSource(
            PROJECT, SERVICE, REGION, {"canary": "r"}, endpoint=monitoring.url, credentials="anonymous"
        )
        with pytest.raises(MetricSourceError, match=r"signing in to Google failed: .*Anonymous credentials cannot be"):
            anonymous.query("request_rate", "canary", 120, end=600)


def test_canary_sensor_gives_the_monitoring_source_the_connections_credentials(
    stand_in: StandIn, authority: TokenAuthority, key_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbopt.metrics.sources import source_from_config
    from dbopt.sensors.canary import CanaryAnalysisSensor

    extra = {"key_path": key_file, "endpoint": stand_in.endpoint}
    monkeypatch.setenv("AIRFLOW_CONN_DBOPT_MON", json.dumps({"conn_type": "google_cloud_platform", "extra": extra}))
    with MonitoringStandIn(authority=authority) as monitoring:
        config = {"kind": "cloud_monitoring", "project": PROJECT, "service": SERVICE, "location": REGION,
                  "scopes": {"canary": "r"}, "endpoint": monitoring.url, "gcp_conn_id": "dbopt_mon"}  # fmt: skip
        sensor = CanaryAnalysisSensor(task_id="monitor", plan={"rules": []}, sources={"metrics": config})
        resolved = sensor._source_configs()["metrics"]
        assert resolved["credentials"] == extra and "gcp_conn_id" not in resolved
        source_from_config(resolved).query("request_rate", "canary", 120, end=600)
        assert monitoring.principals == [SA]
