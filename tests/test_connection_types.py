"""dbopt's connection types as Airflow sees them: the CLI keeps `--conn-type sqlite|mysql` (not
`generic`), and the stored connection opens the dbopt target it describes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

from dbopt.hooks.database import connection_url
from dbopt.provider_info import get_provider_info

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _airflow(*args: str) -> str:
    done = subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=os.environ, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_provider_info_validates_against_airflows_runtime_schema():
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


CASES = {
    "sqlite": (["--conn-host", "/srv/data/worklogs.db"], "sqlite:////srv/data/worklogs.db"),
    "mysql": (["--conn-host", "127.0.0.1", "--conn-port", "3306", "--conn-login", "dbopt", "--conn-schema", "demo"],
              "mysql://dbopt@127.0.0.1:3306/demo"),
}  # fmt: skip


def test_cli_keeps_the_connection_types_and_dbopt_reads_them(tmp_path):
    ids = {conn_type: f"dbopt_t_{uuid.uuid4().hex[:8]}" for conn_type in CASES}
    try:
        for conn_type, (fields, _) in CASES.items():
            assert "Successfully added" in _airflow("connections", "add", ids[conn_type], "--conn-type", conn_type,
                                                    *fields)  # fmt: skip
        _airflow("connections", "export", str(tmp_path / "connections.json"))
        stored = json.loads((tmp_path / "connections.json").read_text())
        for conn_type, (_, url) in CASES.items():
            conn = stored[ids[conn_type]] | {"conn_id": ids[conn_type]}
            assert conn["conn_type"] == conn_type  # before: `generic`, which dbopt rejects
            fields = {k: conn.get(k) for k in ("conn_id", "conn_type", "host", "schema", "login", "port")}
            assert connection_url(SimpleNamespace(**fields, password=None, extra=None)).render_as_string() == url
    finally:
        for conn_id in ids.values():
            subprocess.run([AIRFLOW, "connections", "delete", conn_id], capture_output=True, timeout=120)
