"""Alembic environment for crm-schema.

Online runs take an advisory lock (two deploys never migrate at once), set a short
``lock_timeout`` (a migration that cannot get its lock fails in seconds instead of queueing
every query on a busy table behind it) and run each revision in its own transaction.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from crm_schema.db import DatabaseError, connect_checked, make_engine, normalize_url, url_from_env
from crm_schema.models import Base, include_name, include_object
from crm_schema.runbook.baseline import adopting_baseline, refuse_unstamped_baseline

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Any constant works; it only has to be the same for every crm-schema deploy.
MIGRATION_LOCK_KEY = 0x63726D5F  # "crm_"
DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "30min"


def _x_args() -> dict[str, str]:
    return context.get_x_argument(as_dictionary=True)


def _timeouts() -> dict[str, str]:
    x = _x_args()
    return {
        "lock_timeout": x.get("lock_timeout")
        or os.environ.get("CRM_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT),
        "statement_timeout": x.get("statement_timeout")
        or os.environ.get("CRM_STATEMENT_TIMEOUT", DEFAULT_STATEMENT_TIMEOUT),
    }


def _database_url() -> str:
    url = _x_args().get("url") or config.get_main_option("sqlalchemy.url") or url_from_env()
    if not url:
        raise CommandError(
            "DATABASE_URL is not set: export "
            "DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/DBNAME "
            "(or pass -x url=...)"
        )
    return url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=Base.metadata,
        include_name=include_name,
        include_object=include_object,
        transaction_per_migration=True,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Write the SQL to stdout (``alembic upgrade A:B --sql``); no database is needed."""
    url = _x_args().get("url") or config.get_main_option("sqlalchemy.url") or url_from_env()
    # "named" paramstyle: with psycopg's default, every '%' in the SQL (format('%I'), LIKE
    # patterns) would come out doubled, which psql does not undo.
    target = {"url": normalize_url(url)} if url else {"dialect_name": "postgresql"}
    _configure(literal_binds=True, dialect_opts={"paramstyle": "named"}, **target)
    for name, value in _timeouts().items():
        context.execute(f"SET {name} = '{value}'")
    with context.begin_transaction():
        context.run_migrations()


def _set_timeouts(connection: Connection) -> None:
    for name, value in _timeouts().items():
        try:
            connection.execute(
                text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value}
            )
        except DBAPIError as exc:
            raise CommandError(f"invalid {name} {value!r}: {str(exc).splitlines()[0]}") from exc


def _run_locked(connection: Connection) -> None:
    got = connection.execute(
        text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY}
    ).scalar()
    connection.commit()
    if not got:
        raise CommandError(
            "another crm-schema migration is running on this database (advisory lock "
            f"{MIGRATION_LOCK_KEY} is held); wait for it to finish and run again"
        )
    try:
        _set_timeouts(connection)
        connection.commit()
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Engine):
        with given.connect() as connection:
            _run_locked(connection)
        return
    if given is not None:
        # A caller (pytest-alembic, an application) owns this connection and its
        # transaction: run inside it, without committing on its behalf.
        _set_timeouts(given)
        _configure(connection=given)
        with context.begin_transaction():
            context.run_migrations()
        return
    try:
        connection = connect_checked(make_engine(_database_url()))
    except DatabaseError as exc:
        raise CommandError(str(exc)) from exc
    with connection:
        if not adopting_baseline(config):
            try:
                refuse_unstamped_baseline(connection)  # before alembic_version is created
            except DatabaseError as exc:
                raise CommandError(str(exc)) from exc
        _run_locked(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
