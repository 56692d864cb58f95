"""docker-compose.yaml and the Dockerfile, checked without Docker: the compose file against the
Compose Specification JSON schema (tests/data/compose-spec.json, see its README), pinned images,
health checks, dependencies, mounted files, connections for every plan, and the README's services.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jsonschema
import yaml

from dbopt.plan import load_plan, plan_files

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())  # a real YAML parser: anchors, merge keys
SERVICES: dict = COMPOSE["services"]
ONE_SHOT = {"airflow-init", "demo-data"}  # run to completion; everything else stays up with a health check
AIRFLOW_SERVICES = {
    "postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-triggerer", "airflow-worker",
}  # fmt: skip
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _expand(text: str) -> str:
    """Compose's ${VAR:-default} interpolation with every variable unset (what a fresh clone gets)."""
    return VARIABLE.sub(lambda m: m.group(2) or "", text)


def test_compose_file_matches_the_compose_spec_schema():
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_rejects_a_broken_compose_file():
    """The validator is not vacuous: a typo in a service key and a bad depends_on condition are caught."""
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    broken = {"services": {"a": {"image": "x:1", "helthcheck": {}}, "b": {"depends_on": {"a": {"condition": "up"}}}}}
    assert len(list(jsonschema.Draft201909Validator(schema).iter_errors(broken))) >= 2


def test_stack_has_airflow_and_the_services_a_run_talks_to():
    wanted = AIRFLOW_SERVICES | {"target-postgres", "target-mariadb", "prometheus", "mailpit", "gcp-standin"}
    assert wanted <= SERVICES.keys()
    assert COMPOSE["x-airflow-common"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    preload = " ".join(SERVICES["target-postgres"]["command"])
    assert "shared_preload_libraries=pg_stat_statements" in preload
    assert "--performance-schema=ON" in SERVICES["target-mariadb"]["command"]


def test_images_are_pinned():
    for name, service in SERVICES.items():
        image = _expand(service["image"])
        repo, _, tag = image.rpartition(":")
        assert repo and re.search(r"\d+\.\d+", tag) and tag != "latest", f"{name}: pin {image!r} to a version"
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base and base.group(1) == "apache/airflow:3.3.2-python3.11"


def test_long_running_services_have_health_checks_and_dependencies_resolve():
    for name, service in SERVICES.items():
        assert (name in ONE_SHOT) != ("healthcheck" in service), f"{name}: health check expected only on daemons"
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep} to be healthy but it has no check"
            if how["condition"] == "service_completed_successfully":
                assert dep in ONE_SHOT


def test_mounted_files_exist_in_the_repository():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source not in ("./logs", "./reports"):  # created on first start
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_every_plan_connection_is_defined_and_parses():
    env = COMPOSE["x-airflow-common"]["environment"]
    connections = {
        key.removeprefix("AIRFLOW_CONN_").lower(): json.loads(_expand(value))
        for key, value in env.items()
        if key.startswith("AIRFLOW_CONN_")
    }
    for conn in connections.values():
        assert conn["conn_type"]
    for path in plan_files(ROOT / "include" / "plans"):
        plan = load_plan(path)
        used = {t.conn_id for t in plan.targets} | {t.cloud_sql.conn_id for t in plan.targets if t.cloud_sql}
        used |= {c for c in (plan.health_gate.metrics_conn_id, plan.monitor.metrics_conn_id) if c}
        if plan.deploy.enabled:
            used.add(plan.deploy.conn_id)
        assert used <= connections.keys(), f"{path.name}: no AIRFLOW_CONN_* for {sorted(used - connections.keys())}"


def test_passwords_come_from_variables_not_literals():
    """Every password in the file is a ${VAR:-local default}, so an .env file replaces them all."""
    text = (ROOT / "docker-compose.yaml").read_text()
    yaml_keys = re.findall(r"(?im)^\s*\w*password\w*:\s*(\S+)\s*$", text)
    json_keys = re.findall(r'(?i)"password":\s*"([^"]*)"', text)
    assert len(yaml_keys) >= 4 and len(json_keys) >= 2
    for value in yaml_keys + json_keys:
        assert value.startswith("${"), f"literal password {value!r}: use ${{VAR:-local default}}"


def test_every_airflow_container_shares_one_history_on_the_stack_postgres():
    """Without it each container kept its own SQLite file: the worker's step records, the report's
    trend, the daily report and the run leases (one run per database) would each see another history."""
    from sqlalchemy.engine import make_url

    urls = {name: (s.get("environment") or {}).get("DBOPT_HISTORY_URL") for name, s in SERVICES.items()
            if name.startswith("airflow-")}  # fmt: skip
    assert len(set(urls.values())) == 1 and None not in urls.values(), urls
    url = make_url(_expand(next(iter(urls.values()))))
    db = SERVICES["postgres"]["environment"]
    assert (url.get_backend_name(), url.host, url.username, url.database) == (
        "postgresql", "postgres", _expand(db["POSTGRES_USER"]), _expand(db["POSTGRES_DB"]))  # fmt: skip
    assert url.password == _expand(db["POSTGRES_PASSWORD"])


def test_python_modules_the_stack_runs_are_runnable():
    for name, service in SERVICES.items():
        command = service.get("entrypoint") or []
        if command[:2] == ["python", "-m"]:
            spec = importlib.util.find_spec(command[2])
            assert spec and spec.origin, f"{name}: no module {command[2]}"
            assert 'if __name__ == "__main__":' in Path(spec.origin).read_text(), f"{name}: {command[2]} has no main"
            assert "--host" in Path(spec.origin).read_text()


def _readme_stack_services() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Running the full stack\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "README has no '## Running the full stack' section (text in the issue-8 report)"
    return re.findall(r"^\| `([a-z0-9-]+)` \|", section.group(1), re.MULTILINE)


def test_every_service_the_readme_names_exists():
    named = _readme_stack_services()
    assert named, "the README section lists no services (a table whose first column is `service`)"
    assert sorted(set(named) - SERVICES.keys()) == []
    assert sorted(SERVICES.keys() - set(named)) == []  # and the README lists them all


def test_the_executor_of_the_stack_is_pinned_in_requirements():
    """CeleryExecutor and `airflow celery worker` need the Celery provider (FAB's auth manager ships in the image)."""
    assert SERVICES["airflow-worker"]["command"] == "celery worker"
    pins = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow-providers-celery==\d", pins, re.MULTILINE)
    assert re.search(r"^redis==\d", pins, re.MULTILINE)  # the broker client
