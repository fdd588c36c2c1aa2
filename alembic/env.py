"""Alembic environment for crm-schema.

Online runs take an advisory lock (two deploys never migrate at once), set a short
``lock_timeout`` (a migration that cannot get its lock fails in seconds instead of queueing
every query on a busy table behind it) and run each revision in its own transaction.
"""

from __future__ import annotations

import logging
import os
import time
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from crm_schema import locks, transactions
from crm_schema.db import (
    DatabaseError,
    connect_checked,
    first_line,
    make_engine,
    normalize_url,
    url_from_env,
)
from crm_schema.models import Base, include_name, include_object
from crm_schema.runbook.baseline import adopting_baseline, refuse_unstamped_baseline

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Any constant works; it only has to be the same for every crm-schema deploy.
MIGRATION_LOCK_KEY = 0x63726D5F  # "crm_"
# Governs only the steps that never block the application (concurrent index builds and
# validations waiting for older transactions); the steps that do block it wait for their locks
# briefly and retry instead (crm_schema.locks).
DEFAULT_LOCK_TIMEOUT = "1min"
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


def _configure(**kwargs: Any) -> None:
    options: dict[str, Any] = {
        "target_metadata": Base.metadata,
        "include_name": include_name,
        "include_object": include_object,
        "transaction_per_migration": True,
        "compare_type": True,
    }
    context.configure(**{**options, **kwargs})


def run_migrations_offline() -> None:
    """Write the SQL to stdout (``alembic upgrade A:B --sql``); no database is needed.
    Revisions that commit together share one BEGIN ... COMMIT, as online."""
    url = _x_args().get("url") or config.get_main_option("sqlalchemy.url") or url_from_env()
    # "named" paramstyle: with psycopg's default, every '%' in the SQL (format('%I'), LIKE
    # patterns) would come out doubled, which psql does not undo.
    target = {"url": normalize_url(url)} if url else {"dialect_name": "postgresql"}
    options = {"literal_binds": True, "dialect_opts": {"paramstyle": "named"}, **target}
    _configure(**options)
    for name, value in _timeouts().items():
        context.execute(f"SET {name} = '{value}'")
    ctx = context.get_context()
    steps = list(_command_fn()(ctx.get_current_heads(), ctx)) if _runs_revisions() else None
    if steps is None:
        with context.begin_transaction():
            context.run_migrations()
        return
    transactions.refuse_split_end(steps)
    for group in transactions.groups(steps):
        progress = transactions.Progress(group)
        start = group[0].from_revisions
        _configure(
            fn=progress.steps,
            transaction_per_migration=False,
            starting_rev=start[0] if start else None,
            **options,
        )
        with context.begin_transaction():
            context.run_migrations()


# After each transaction of revisions: the change log's per-table update functions follow the
# columns the tables now have (0005, private.refresh_change_log). Until then a table whose
# columns changed is logged by the generic path: slower, never wrong.
REFRESH_CHANGE_LOG = """
DO $refresh$
BEGIN
    IF pg_catalog.to_regprocedure('private.refresh_change_log(regclass)') IS NOT NULL THEN
        PERFORM private.refresh_change_log();
    END IF;
END
$refresh$"""


def _command_fn() -> Any:
    """The work function of the alembic command being run (after a first ``configure``)."""
    return context.get_context().environment_context.context_opts.get("fn")


def _stamping(connection: Connection) -> bool:
    """True for ``stamp`` however it was called (the command line, alembic.command.stamp(),
    crm_schema.migrations.stamp()): adopting a baseline is exactly what stamping is for."""
    quiet = logging.getLogger("alembic.runtime.migration")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # its "Context impl ..." lines belong to the real run
    try:
        _configure(connection=connection)
        command_fn = _command_fn()
    finally:
        quiet.setLevel(level)
    connection.rollback()
    return (
        getattr(command_fn, "__module__", "") == "alembic.command"
        and getattr(command_fn, "__name__", "") == "do_stamp"
    )


def _runs_revisions() -> bool:
    """True for ``upgrade`` and ``downgrade``; false for commands such as ``current``."""
    command_fn = _command_fn()
    return getattr(command_fn, "__module__", "") == "alembic.command" and getattr(
        command_fn, "__name__", ""
    ) in ("upgrade", "downgrade")


def _set_timeouts(connection: Connection) -> None:
    for name, value in _timeouts().items():
        try:
            connection.execute(
                text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value}
            )
        except DBAPIError as exc:
            if not str(getattr(exc.orig, "sqlstate", "")).startswith("22"):  # not a bad value
                raise
            raise CommandError(f"invalid {name} {value!r}: {str(exc).splitlines()[0]}") from exc


def _retry_policy() -> locks.RetryPolicy:
    attempts = _x_args().get("lock_retries") or os.environ.get("CRM_LOCK_RETRIES")
    if attempts is None:
        return locks.RetryPolicy()
    if not attempts.isdigit() or int(attempts) < 1:
        raise CommandError(f"invalid lock_retries {attempts!r}: give a whole number, 1 or more")
    return locks.RetryPolicy(attempts=int(attempts))


def _run_locked(connection: Connection, engine: Engine) -> None:
    try:
        got = connection.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY}
        ).scalar()
        connection.commit()
    except DBAPIError as exc:
        raise CommandError(
            f"before migrating: {first_line(exc)}; nothing was changed, run it again"
        ) from exc
    if not got:
        raise transactions.RefusedError(
            "another crm-schema migration is running on this database (advisory lock "
            f"{MIGRATION_LOCK_KEY} is held); wait for it to finish and run again"
        )
    try:
        _set_timeouts(connection)
        connection.commit()
        _run_planned(connection, engine)
    except DBAPIError as exc:  # outside any revision's transaction (those say more)
        raise CommandError(f"while preparing the migration: {first_line(exc)}") from exc
    finally:
        _unlock(connection)


def _unlock(connection: Connection) -> None:
    locks.safe_rollback(connection)
    if connection.invalidated:
        return
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()
    except DBAPIError:
        # A lost connection took its session, and so the advisory lock, with it.
        locks.safe_rollback(connection)


def _planned_steps(connection: Connection) -> list[Any] | None:
    """The revision steps this command will run, oldest first for an upgrade, or None for a
    command that runs no revisions (``current``, ``stamp``, ...)."""
    _configure(connection=connection)
    if not _runs_revisions():
        return None
    ctx = context.get_context()
    steps = list(_command_fn()(ctx.get_current_heads(), ctx))
    connection.rollback()
    return steps


def _run_planned(connection: Connection, engine: Engine) -> None:
    steps = _planned_steps(connection)
    if steps is None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    transactions.refuse_split_end(steps)
    policy = _retry_policy()
    for group in transactions.groups(steps):
        _run_group(connection, engine, group, policy)


def _run_group(connection: Connection, engine: Engine, group: list[Any], policy: Any) -> None:
    """Run revisions that commit together in one transaction, retried whole while it cannot
    get its locks in time (see crm_schema.locks)."""
    progress = transactions.Progress(group)
    schedule = list(policy.schedule(locks.deadlock_timeout_seconds(connection)))
    connection.rollback()
    with progress.watching(connection):
        for attempt, (timeout, pause) in enumerate(schedule, start=1):
            if _attempt(connection, engine, progress, timeout, (attempt, len(schedule))):
                config.attributes.setdefault("lock_attempts", {})[progress.label] = attempt
                return
            try:
                time.sleep(pause)  # holding nothing: the attempt was rolled back
            except KeyboardInterrupt as exc:
                raise transactions.interrupted(engine, progress) from exc


def _attempt(
    connection: Connection, engine: Engine, progress: Any, timeout: float, of: tuple[int, int]
) -> bool:
    """Try ``of`` = (n, total) at the group's transaction: True when it committed, False when
    it could not get its locks in time and may be tried again; any other failure is raised,
    as one line."""
    _configure(connection=connection, fn=progress.steps, transaction_per_migration=False)
    try:
        with context.begin_transaction():
            connection.execute(
                text("SELECT set_config('lock_timeout', :t, true)"),
                {"t": f"{round(timeout * 1000)}ms"},
            )
            context.run_migrations()
            connection.execute(text(REFRESH_CHANGE_LOG))
        return True
    except (SQLAlchemyError, KeyboardInterrupt) as exc:
        # Clean-up code (alembic's, SQLAlchemy's) may raise anew on a connection that is
        # gone: what stopped the run is the first cause in the chain.
        cause = transactions.first_cause(exc)
        locks.safe_rollback(connection)
        if isinstance(cause, KeyboardInterrupt):
            raise transactions.interrupted(engine, progress) from exc
        if not isinstance(cause, DBAPIError):
            raise
        if locks.is_lock_wait(cause) and of[0] < of[1]:
            return False
        raise transactions.failure(engine, progress, cause, of[0]) from exc


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Engine):
        with given.connect() as connection:
            _run_locked(connection, given)
        return
    if given is not None:
        # A caller (pytest-alembic, an application) owns this connection and its
        # transaction: run inside it, without committing on its behalf.
        _set_timeouts(given)
        _configure(connection=given)
        with context.begin_transaction():
            context.run_migrations()
            if _runs_revisions():
                given.execute(text(REFRESH_CHANGE_LOG))
        return
    try:
        engine = make_engine(_database_url())
        connection = connect_checked(engine)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from exc
    with connection:
        if not adopting_baseline(config) and not _stamping(connection):
            try:
                refuse_unstamped_baseline(connection)  # before alembic_version is created
            except DatabaseError as exc:
                raise CommandError(str(exc)) from exc
        _run_locked(connection, engine)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
