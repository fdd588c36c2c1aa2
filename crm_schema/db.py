"""Database URLs and the connection checks every entry point shares.

The CLI, the Python API and ``alembic/env.py`` all go through :func:`connect_checked`, so a
wrong URL, an unreachable server or a server that is too old gives the same one-line
diagnosis everywhere, before anything is changed.
"""

from __future__ import annotations

import os

from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

MIN_SERVER_VERSION_NUM = 150000  # Supabase runs PostgreSQL 15; older servers lack what we use.
URL_ENV_VAR = "DATABASE_URL"


class DatabaseError(Exception):
    """A problem with the target database, phrased for the person running the command."""


def url_from_env() -> str | None:
    """The database URL from ``DATABASE_URL``, if set and not blank."""
    value = os.environ.get(URL_ENV_VAR, "").strip()
    return value or None


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(
            f"not a database URL: {url!s}; expected postgresql://USER:PASSWORD@HOST:5432/DBNAME"
        ) from exc


def normalize_url(url: str | URL) -> URL:
    """Parse ``url`` and pin the psycopg 3 driver.

    ``postgresql://`` (what Supabase and psql print) would make SQLAlchemy look for psycopg2,
    which this package does not install.
    """
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres"):
        shown = parsed.render_as_string(hide_password=True)
        raise DatabaseError(f"crm-schema only supports PostgreSQL, not {backend!r} ({shown})")
    return parsed.set(drivername="postgresql+psycopg")


def redact(url: str | URL) -> str:
    """The URL as people write it (no driver suffix), password hidden, for messages and logs."""
    return normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=True)


def make_engine(url: str | URL) -> Engine:
    """An engine without pooling: migrations and CLI commands use one connection and exit."""
    return create_engine(normalize_url(url), poolclass=pool.NullPool)


def first_line(exc: BaseException) -> str:
    """The first line of a (database) error message, for one-line diagnoses."""
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def check_server(connection: Connection) -> int:
    """Fail unless the server is PostgreSQL 15 or newer; return its ``server_version_num``."""
    version = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    if version < MIN_SERVER_VERSION_NUM:
        shown = connection.execute(text("SHOW server_version")).scalar_one()
        raise DatabaseError(
            f"PostgreSQL {shown} is too old: crm-schema needs PostgreSQL 15 or newer "
            "(Supabase's version); upgrade the server or point DATABASE_URL at another one"
        )
    return version


def connect_checked(engine: Engine) -> Connection:
    """Open a connection and run :func:`check_server`, turning failures into one clear line."""
    try:
        connection = engine.connect()
    except DBAPIError as exc:  # refused, unreachable, or a bad option in the URL
        raise DatabaseError(
            f"cannot connect to {redact(engine.url)}: {first_line(exc)} "
            "(check the host, port, user, password and database name in DATABASE_URL)"
        ) from exc
    try:
        check_server(connection)
    except BaseException:
        connection.close()
        raise
    return connection
