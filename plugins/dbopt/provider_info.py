"""dbopt as an Airflow provider: the connection types Airflow has no installed provider for.

Airflow finds this through the ``apache_airflow_provider`` entry point (pyproject.toml), so
``airflow connections add --conn-type sqlite|mysql`` keeps the type and the UI's connection form
offers both, with the fields dbopt reads. Plain data: no Airflow import here.
"""

from __future__ import annotations

from typing import Any

HOOKS = "dbopt.hooks.database"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "dbopt",  # must equal the distribution name (Airflow checks)
        "name": "dbopt",
        "description": "Weekly database-optimization plans: connection types for dbopt targets.",
        "connection-types": [
            {
                "connection-type": "sqlite",
                "hook-class-name": f"{HOOKS}.SqliteTargetHook",
                "hook-name": "SQLite (dbopt target)",
                "ui-field-behaviour": {
                    # dbopt reads the database file from Host; the other fields mean nothing for a file
                    "hidden-fields": ["login", "password", "port", "schema"],
                    "relabeling": {"host": "Database file (absolute path)"},
                    "placeholders": {"host": "/srv/data/worklogs.db"},
                },
            },
            {
                "connection-type": "mysql",
                "hook-class-name": f"{HOOKS}.MysqlTargetHook",
                "hook-name": "MySQL / MariaDB (dbopt target)",
                "ui-field-behaviour": {
                    "hidden-fields": ["extra"],
                    "relabeling": {"schema": "Database"},
                    "placeholders": {"host": "127.0.0.1", "port": "3306", "schema": "demo", "login": "dbopt"},
                },
            },
        ],
    }
