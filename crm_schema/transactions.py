"""Which revisions commit together, and what a stopped migration tells the DBA.

Every revision commits on its own, except where a revision's module says
``commit_with_next = True``: then it and the next revision run in one transaction, in both
directions. Phase 4's policies (0006) need the default role permissions that phase 5 (0007)
inserts; committed apart, every agent would see nothing in between. A run may not end inside
such a group: no committed state of the database is ever one that gives users less access
than both ends of the migration.

Revision 0004 is the one revision that commits in steps: its indexes are built
``CONCURRENTLY``, outside any transaction. A run stopped there leaves the database recorded
at 0003 with part of 0004 in place; :func:`half_applied` finds it, ``crm-schema upgrade``
finishes it and the 0003 downgrade removes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError

from crm_schema import locks, migrations
from crm_schema.db import first_line

PHASE2 = "0004_phase2_indexes_constraints"
NEXT_STEP = "run `crm-schema upgrade` to finish, or `crm-schema rollback --yes` to go back"
_CONCURRENT_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z0-9_]+)",
    re.IGNORECASE,
)


class RefusedError(CommandError):
    """The run was refused before it changed anything (another migration holds the lock, or
    the target would split revisions that commit together)."""


def _commits_with_next(step: Any) -> bool:
    return bool(getattr(step.revision.module, "commit_with_next", False))


def _joined(step: Any, following: Any) -> bool:
    # Upgrading, X commits with X+1 when X says so; downgrading X+1 then X, likewise.
    return _commits_with_next(step if step.is_upgrade else following)


def groups(steps: Sequence[Any]) -> Iterator[list[Any]]:
    """The steps, cut into the runs that commit as one transaction."""
    group: list[Any] = []
    for index, step in enumerate(steps):
        group.append(step)
        following = steps[index + 1] if index + 1 < len(steps) else None
        if following is None or not _joined(step, following):
            yield group
            group = []


def refuse_split_end(steps: Sequence[Any]) -> None:
    """Refuse a target that would leave a group half done, before anything runs."""
    if not steps:
        return
    last = steps[-1]
    script = migrations.script_directory()
    if last.is_upgrade:
        if _commits_with_next(last):
            after = next(
                s
                for s in migrations.revisions_in_order()
                if s.down_revision == last.revision.revision
            )
            raise RefusedError(
                f"{last.revision.revision} commits together with {after.revision} (its "
                f"policies need that revision's default data): upgrade to {after.revision}; "
                "nothing was changed"
            )
        return
    below = last.revision.down_revision
    if isinstance(below, str) and getattr(
        script.get_revision(below).module, "commit_with_next", False
    ):
        lower = script.get_revision(below).down_revision
        raise RefusedError(
            f"{below} commits together with {last.revision.revision}: downgrade to "
            f"{lower} instead; nothing was changed"
        )


class Progress:
    """Which revision of a group is running, and the last statement sent for it."""

    def __init__(self, group: list[Any]) -> None:
        self.group = group
        self.current: Any = group[0]
        self.statement: str | None = None

    def steps(self, _heads: object, _context: object) -> Iterator[Any]:
        for step in self.group:
            self.current = step
            yield step

    def _remember(self, *args: Any) -> None:
        self.statement = args[2]

    @contextmanager
    def watching(self, connection: Connection) -> Iterator[None]:
        """Remember each statement sent on ``connection`` while the group runs."""
        event.listen(connection, "before_cursor_execute", self._remember)
        try:
            yield
        finally:
            event.remove(connection, "before_cursor_execute", self._remember)

    @property
    def label(self) -> str:
        return " + ".join(str(step.revision.revision) for step in self.group)

    @property
    def revision(self) -> str:
        return str(self.current.revision.revision)

    @property
    def direction(self) -> str:
        return "upgrade" if self.current.is_upgrade else "downgrade"


# --- a half-applied 0004 ---------------------------------------------------------------


@cache  # the revision's constants do not change while the process runs
def _phase2_objects() -> dict[str, str]:
    """Each object 0004 creates, with the SQL that says whether it exists."""
    module = migrations.script_directory().get_revision(PHASE2).module
    objects = {
        "public.ensure_activity_log_partitions()": (
            "to_regprocedure('public.ensure_activity_log_partitions(integer, date)') IS NOT NULL"
        ),
        "partitioned public.user_activity_log": (
            "EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('public.user_activity_log')"
            " AND relkind = 'p')"
        ),
    }
    for table, name, _ in module.CHECKS:
        objects[f"constraint {name}"] = (
            f"EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '{name}' "
            f"AND conrelid = to_regclass('public.{table}'))"
        )
    for name, _ in module.CONCURRENT_INDEXES:
        objects[f"index {name}"] = f"to_regclass('public.{name}') IS NOT NULL"
    return objects


def half_applied(connection: Connection) -> tuple[str, list[str]] | None:
    """(revision, the objects of it that exist) when the database is recorded one revision
    short of a revision that is partly in place; else None."""
    current = MigrationContext.configure(connection).get_current_revision()
    ids = migrations.revision_ids()
    if current not in ids or ids.index(current) + 1 >= len(ids):
        return None
    if ids[ids.index(current) + 1] != PHASE2:
        return None
    objects = _phase2_objects()
    checks = ", ".join(f"{sql} AS c{i}" for i, sql in enumerate(objects.values()))
    row = connection.execute(text(f"SELECT {checks}")).one()
    present = [name for name, there in zip(objects, row, strict=True) if there]
    return (PHASE2, present) if present else None


def half_applied_text(connection: Connection) -> str | None:
    """'part of R in place (n of m of its objects)', or None when nothing is half applied."""
    partial = half_applied(connection)
    if partial is None:
        return None
    revision, present = partial
    return (
        f"part of {revision} in place ({len(present)} of {len(_phase2_objects())} of its objects)"
    )


def describe_state(connection: Connection) -> str:
    """Where the database stands and what to do next, in words, after a stopped run."""
    current = MigrationContext.configure(connection).get_current_revision()
    partial = half_applied_text(connection)
    connection.rollback()
    ids = migrations.revision_ids()
    past_baseline = current in ids and ids.index(current) > ids.index(migrations.BASELINE_REVISION)
    advice = NEXT_STEP if past_baseline else "run `crm-schema upgrade` again"
    if partial is None:
        return f"the database is at {current or 'base'}; {advice}"
    return f"the database is at {current} with {partial}; {advice}"


# --- messages for a stopped run --------------------------------------------------------


def first_cause(exc: BaseException) -> BaseException:
    """The earliest interrupt or database error behind ``exc`` (following the chain of
    exceptions raised while handling others), else ``exc`` itself."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for kind in (KeyboardInterrupt, DBAPIError):
        found = [e for e in chain if isinstance(e, kind)]
        if found:
            return found[-1]
    return exc


def _drop_half_built_index(connection: Connection, statement: str | None) -> str:
    """After a concurrent build stopped: drop the invalid index it leaves. Concurrently, so
    it never blocks the application; it gives up after a short wait (upgrade and rollback
    remove it anyway)."""
    match = _CONCURRENT_INDEX.search(statement or "")
    if match is None:
        return ""
    name = match.group(1)
    invalid = connection.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(:n) "
            "AND NOT indisvalid)"
        ),
        {"n": f"public.{name}"},
    ).scalar()
    connection.rollback()
    if not invalid:
        return ""
    # DROP INDEX CONCURRENTLY cannot run in a transaction: a connection of its own.
    with connection.engine.connect() as own:
        own.execution_options(isolation_level="AUTOCOMMIT")
        try:
            own.execute(text("SET lock_timeout = '2s'"))
            own.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS public.{name}"))
        except DBAPIError as exc:
            reason = "its table is in use" if locks.is_lock_timeout(exc) else first_line(exc)
            return (
                f"; the half-built index {name} is still there ({reason}): upgrade or "
                "rollback removes it"
            )
    return f"; dropped the half-built index {name}"


def _what_failed(connection: Connection, exc: DBAPIError, attempts: int) -> str:
    statement = exc.statement
    if exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) is None:
        return f"lost the connection to the database ({first_line(exc)})"
    index = _CONCURRENT_INDEX.search(statement or "")
    if locks.is_lock_timeout(exc) and index is not None:
        return (
            f"building index {index.group(1)} waited lock_timeout for older transactions to "
            f"finish: waited behind {locks.describe_blockers(connection, statement)}"
        )
    if locks.is_lock_timeout(exc):
        relations = ", ".join(locks.existing_relations(connection, statement)[:4]) or "its tables"
        tries = f" in {attempts} attempts" if attempts > 1 else ""
        return (
            f"could not lock {relations}{tries}: waited behind "
            f"{locks.describe_blockers(connection, statement)}"
        )
    diag = getattr(exc.orig, "diag", None)
    where = getattr(diag, "constraint_name", None) or getattr(diag, "table_name", None)
    hint = getattr(diag, "message_hint", None)
    return f"{where + ': ' if where else ''}{first_line(exc)}{' (' + hint + ')' if hint else ''}"


def failure(engine: Engine, progress: Progress, exc: DBAPIError, attempts: int) -> CommandError:
    """One line: which revision stopped, on what, where the database now stands, what next."""
    with engine.connect() as connection:
        what = _what_failed(connection, exc, attempts)
        cleanup = _drop_half_built_index(connection, exc.statement)
        state = describe_state(connection)
    return CommandError(
        f"{progress.revision} ({progress.direction}) stopped: {what}{cleanup}; {state}"
    )


def interrupted(engine: Engine, progress: Progress) -> CommandError:
    with engine.connect() as connection:
        cleanup = _drop_half_built_index(connection, progress.statement)
        state = describe_state(connection)
    doing = ""
    if progress.statement:
        doing = f" while running: {' '.join(progress.statement.split())[:80]}"
    return CommandError(
        f"interrupted: {progress.revision} ({progress.direction}) stopped{doing}{cleanup}; {state}"
    )
