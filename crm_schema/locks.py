"""Lock discipline for migrating a database that stays in use.

A revision that changes a busy table needs a lock that blocks the application's writers
(ACCESS EXCLUSIVE for ALTER TABLE, triggers and policies). Waiting for such a lock is what
hurts: every query on the table queues behind the waiting migration. So, as GitLab runs its
migrations (``with_lock_retries``), a revision's transaction waits only briefly for its locks
(a short ``lock_timeout``); when that runs out it is rolled back whole, releasing whatever it
held, sleeps, and tries again with a slightly longer timeout. Each attempt's timeout also stays
under the server's ``deadlock_timeout``: the migration always gives up before PostgreSQL's
deadlock check could pick an application transaction as the victim.

Steps that do not block writers (``CREATE INDEX CONCURRENTLY``, ``VALIDATE CONSTRAINT``) are
not retried: they wait up to the session's own ``lock_timeout`` and then fail, naming what
they waited for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

# Statements that wait without blocking the application: never retried.
_NON_BLOCKING = re.compile(r"\b(CONCURRENTLY|VALIDATE\s+CONSTRAINT)\b", re.IGNORECASE)
_RELATION = re.compile(r"\b(public|auth|activity_archive)\.([a-z_][a-z0-9_]*)\b", re.IGNORECASE)


@dataclass(frozen=True)
class RetryPolicy:
    """How a revision's transaction waits for its locks: ``attempts`` tries, the first with
    ``first_timeout`` seconds of ``lock_timeout``, each later one ``growth`` times longer up
    to ``max_timeout``, with a pause between tries that grows the same way."""

    attempts: int = 40
    first_timeout: float = 0.1
    max_timeout: float = 0.5
    growth: float = 1.2
    first_pause: float = 0.05
    max_pause: float = 2.0

    def schedule(self, deadlock_timeout: float) -> Iterator[tuple[float, float]]:
        """(lock_timeout, pause after a failed attempt) for each attempt, in seconds."""
        cap = min(self.max_timeout, deadlock_timeout * 0.5)
        for attempt in range(self.attempts):
            factor = self.growth**attempt
            yield (
                min(self.first_timeout * factor, cap),
                min(self.first_pause * factor, self.max_pause),
            )


def is_lock_wait(exc: BaseException) -> bool:
    """A lock timeout (or a deadlock the migration lost) while taking a lock that blocks
    the application: the attempt can be rolled back and tried again."""
    orig = getattr(exc, "orig", None)
    if not isinstance(orig, pg_errors.LockNotAvailable | pg_errors.DeadlockDetected):
        return False
    statement = getattr(exc, "statement", None) or ""
    return not _NON_BLOCKING.search(statement)


def is_lock_timeout(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "orig", None), pg_errors.LockNotAvailable)


def relations_in(statement: str | None) -> list[str]:
    """The schema-qualified relations a statement names, in order, without repeats."""
    found = (f"{schema}.{name}" for schema, name in _RELATION.findall(statement or ""))
    return list(dict.fromkeys(found))


def existing_relations(connection: Connection, statement: str | None) -> list[str]:
    """The relations a statement names that exist (not types or functions)."""
    return [r for r in relations_in(statement) if _exists(connection, r)]


def deadlock_timeout_seconds(connection: Connection) -> float:
    ms = connection.execute(
        text("SELECT setting::float FROM pg_settings WHERE name = 'deadlock_timeout'")
    ).scalar()
    return float(ms or 1000.0) / 1000.0


# Sessions holding a lock on one of the relations (granted, so they are what the migration
# waited behind), or, for a concurrent index build that waits for older snapshots, every
# other transaction open in this database. Oldest transaction first.
_BLOCKERS = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '?') AS application_name, a.state,
       extract(epoch FROM now() - a.xact_start)::numeric(12, 1) AS open_seconds,
       string_agg(DISTINCT l.relation::regclass::text, ', ') AS holds
  FROM pg_stat_activity AS a
  LEFT JOIN pg_locks AS l ON l.pid = a.pid AND l.granted AND l.locktype = 'relation'
       AND l.relation = ANY (CAST(:relations AS regclass[]))
 WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
   AND a.xact_start IS NOT NULL AND a.backend_type = 'client backend'
   AND (l.pid IS NOT NULL OR :any_transaction)
 GROUP BY a.pid, a.application_name, a.state, a.xact_start
 ORDER BY a.xact_start
 LIMIT 3
"""


def describe_blockers(connection: Connection, statement: str | None) -> str:
    """Who the statement most likely waited for: pid, application, state and how long its
    transaction has been open. Read after the wait ended, so it may already be gone."""
    relations = existing_relations(connection, statement)
    any_transaction = bool(_NON_BLOCKING.search(statement or ""))
    rows = connection.execute(
        text(_BLOCKERS), {"relations": relations, "any_transaction": any_transaction}
    ).all()
    connection.rollback()
    if not rows:
        return "the blocking session has finished since"
    return "; ".join(
        f"pid {r.pid} ({r.application_name}, {r.state}, transaction open {r.open_seconds}s"
        + (f", holds {r.holds})" if r.holds else ")")
        for r in rows
    )


def _exists(connection: Connection, relation: str) -> bool:
    found = connection.execute(text("SELECT to_regclass(:r) IS NOT NULL"), {"r": relation})
    return found.scalar() is True


def safe_rollback(connection: Connection) -> None:
    """Roll back, ignoring a connection that is already gone (its server session ended, and
    with it the transaction and every lock it held)."""
    try:
        connection.rollback()
    except SQLAlchemyError:
        connection.invalidate()
