"""Database targets: one interface (``base.Target``), one implementation per dialect."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from dbopt.targets.base import Target, TargetError

_DIALECTS = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}


def dialect_of(url: str | URL) -> str:
    """'postgres' | 'mysql' | 'sqlite' for a SQLAlchemy URL (driver suffix ignored)."""
    backend = make_url(url).get_backend_name()
    try:
        return _DIALECTS[backend]
    except KeyError:
        raise TargetError(
            f"unsupported database URL scheme {backend!r}: use postgresql://, mysql:// (or mariadb://) "
            "or sqlite:///path"
        ) from None


def open_target(url: str | URL) -> Target:
    """Connect to the database a SQLAlchemy URL names (``postgresql://``, ``mysql://``, ``sqlite:///``)."""
    dialect = dialect_of(url)
    if dialect == "postgres":
        from dbopt.targets.postgres import PostgresTarget

        return PostgresTarget(make_url(url))
    if dialect == "mysql":
        from dbopt.targets.mysql import MySQLTarget

        return MySQLTarget(make_url(url))
    from dbopt.targets.sqlite import SQLiteTarget

    return SQLiteTarget(make_url(url))


__all__ = ["Target", "TargetError", "dialect_of", "open_target"]
