"""A record's history from the change log: list its versions, and put it back to one.

Both go through the database under the session's own Row Level Security: reading the change
log needs ``read`` on ``change_log`` (admins and auditors), and a revert is
``public.revert_record``, one ordinary update that the triggers version and log.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from crm_schema.enums import ChangeOperation
from crm_schema.models.base import Tracked
from crm_schema.models.change_log import ChangeLog
from crm_schema.models.soft_delete import INCLUDE_DELETED

# Columns the database keeps for itself: never part of a version's content.
BOOKKEEPING = frozenset(
    {"version", "edit_count", "updated_at", "updated_by", "last_login_at", "login_count"}
)


@dataclass(frozen=True)
class Version:
    """One change of a record, and the record's content right after it."""

    change_id: int
    operation: ChangeOperation
    changed_at: dt.datetime
    changed_by: uuid.UUID | None
    changed_columns: list[str]
    values: dict[str, Any] | None
    """The record's columns (as JSON values) after this change; ``None`` after a hard delete."""


def _identity(obj: Tracked) -> tuple[str, uuid.UUID]:
    state = inspect(obj)
    record_id = state.identity[0] if state.identity else getattr(obj, "id", None)
    if not isinstance(record_id, uuid.UUID):
        raise ValueError(f"{type(obj).__name__} has no id yet: flush it first")
    return state.mapper.local_table.name, record_id


def _content(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in BOOKKEEPING}


def versions(session: Session, obj: Tracked) -> list[Version]:
    """The record's versions, oldest first, rebuilt backwards from its current content (so
    rows older than the change log still get a full picture of every later version)."""
    table, record_id = _identity(obj)
    changes = session.scalars(
        select(ChangeLog)
        .where(ChangeLog.table_name == table, ChangeLog.record_id == record_id)
        .order_by(ChangeLog.id)
    ).all()
    # The table name is the mapped model's, never user input.
    current = session.execute(
        text(f"SELECT to_jsonb(t) FROM public.{table} AS t WHERE t.id = :id"),
        {"id": record_id},
    ).scalar()
    state: dict[str, Any] | None = _content(current) if current is not None else None
    result: list[Version] = []
    for change in reversed(changes):
        result.append(
            Version(
                change.id,
                change.operation,
                change.changed_at,
                change.changed_by,
                list(change.changed_columns or []),
                None if change.operation is ChangeOperation.DELETE else state,
            )
        )
        if change.operation is ChangeOperation.INSERT:
            state = None
        elif change.operation is ChangeOperation.DELETE:
            state = _content(change.old_values or {})
        elif state is not None:
            state = {**state, **_content(change.old_values or {})}
    return result[::-1]


def revert(session: Session, obj: Tracked, change_id: int) -> int:
    """Put ``obj`` back to its state just before change ``change_id`` and return its new
    version. The database refuses (and nothing changes) where the caller may not, where the
    record was hard-deleted or a column dropped since, or where a constraint would break."""
    table, record_id = _identity(obj)
    session.flush()
    new_version: int = session.execute(
        text("SELECT public.revert_record(:t, :r, :c)"),
        {"t": table, "r": record_id, "c": change_id},
    ).scalar_one()
    # The row changed underneath the ORM: load it again (even if the revert soft-deleted it).
    session.execute(
        select(type(obj)).where(inspect(type(obj)).primary_key[0] == record_id),
        execution_options={"populate_existing": True, INCLUDE_DELETED: True},
    ).all()
    return new_version
