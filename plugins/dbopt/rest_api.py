"""Airflow's REST API as a user of a stack calls it (``make up``, the end-to-end tests): a
SimpleAuthManager token from ``POST /auth/token``, then ``/api/v2``."""

from __future__ import annotations

import time
from typing import Any

import requests

USER = "admin"


class Api:
    def __init__(self, base_url: str, password: str) -> None:
        self.base = base_url
        reply = requests.post(f"{base_url}/auth/token", json={"username": USER, "password": password}, timeout=30)
        reply.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.session.request(method, f"{self.base}{path}", timeout=60, **kwargs)
        if not reply.ok:
            raise RuntimeError(f"{method} {path}: HTTP {reply.status_code} {reply.text[:500]}")
        return reply.json() if reply.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.session.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=30)
            if reply.ok:
                return reply.json()
            time.sleep(2)
        raise TimeoutError(f"the dag-processor did not serialize {dag_id} within {timeout:.0f}s")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(3)
        raise TimeoutError(f"{dag_id} {run_id} still running after {timeout:.0f}s")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log as text: its structured entries' events, one a line."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        entries = self.call("GET", path, params={"full_content": "true"})["content"]
        return "\n".join(str(e.get("event", "")) if isinstance(e, dict) else str(e) for e in entries)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 500})
        return {(t["task_id"] if t["map_index"] < 0 else f"{t['task_id']}[{t['map_index']}]"): t["state"]
                for t in tis["task_instances"]}  # fmt: skip
