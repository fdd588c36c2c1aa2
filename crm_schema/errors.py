"""The errors an app sees from this package's sessions, instead of raw SQLAlchemy ones.

Row Level Security says "no" in ways that look alike at the driver: an UPDATE or DELETE that
a policy filters out matches no row (SQLAlchemy then raises ``StaleDataError``, exactly as for
a version conflict), a WITH CHECK failure or a guard trigger raises ``InsufficientPrivilege``,
and a row outside the user's reach is simply not found. The sessions in
:mod:`crm_schema.session` tell these apart and raise one of the classes below, each naming
the table and the row id (``None`` when the database refused a new row before it had one).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm.exc import StaleDataError


class CrmError(Exception):
    """Base of every error this package raises to an application."""


class RowError(CrmError):
    """A refusal or a conflict on one row of one table."""

    def __init__(self, table: str | None, row_id: Any, message: str) -> None:
        super().__init__(message)
        self.table = table
        self.row_id = row_id


class AccessDenied(RowError):  # noqa: N818 - the name other code depends on
    """RLS or a guard refused the write: a policy's USING or WITH CHECK clause, or a trigger
    such as "only an admin can restore". An HTTP API answers 403."""


class NotFound(RowError, NoResultFound):  # noqa: N818 - the name other code depends on
    """The row is not there for this user: it does not exist, was deleted or soft-deleted,
    or is outside the user's scope. RLS gives no way to tell these apart, on purpose.
    An HTTP API answers 404."""


class ConcurrentEdit(RowError, StaleDataError):  # noqa: N818 - the name other code depends on
    """Someone else changed the row since it was read (its ``version`` moved on). Reload
    and retry, or show the user the newer version. An HTTP API answers 409.

    Still a ``StaleDataError``, so code written for SQLAlchemy's own error keeps working."""


class InvalidToken(CrmError):  # noqa: N818 - reads as what it is
    """A bearer token that is not a valid Supabase access token for this project: bad
    signature or key, expired, wrong audience, a refused algorithm or role. An HTTP API
    answers 401."""


__all__ = ["AccessDenied", "ConcurrentEdit", "CrmError", "InvalidToken", "NotFound", "RowError"]
