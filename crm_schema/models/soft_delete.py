"""Soft delete in the ORM: reads leave out soft-deleted rows unless asked, and helpers to
soft-delete and restore.

Importing :mod:`crm_schema.models` installs the filter for every SQLAlchemy ``Session``.
"""

from __future__ import annotations

from sqlalchemy import event, func
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from crm_schema.models.base import Tracked

INCLUDE_DELETED = "include_deleted"
"""Execution option: ``session.execute(stmt, execution_options={INCLUDE_DELETED: True})``."""


@event.listens_for(Session, "do_orm_execute")
def _hide_soft_deleted(state: ORMExecuteState) -> None:
    """Add ``deleted_at IS NULL`` for every tracked entity in a top-level ORM query.

    A lazy load through a relationship is not filtered: related rows keep their references,
    so ``order.dispensary`` still finds a soft-deleted dispensary.
    """
    if (
        state.is_select
        and not state.is_column_load
        and not state.is_relationship_load
        and not state.execution_options.get(INCLUDE_DELETED, False)
    ):
        state.statement = state.statement.options(
            with_loader_criteria(
                Tracked,
                lambda cls: cls.deleted_at.is_(None),
                include_aliases=True,
                propagate_to_loaders=False,  # relationship loads stay unfiltered, as documented
            )
        )


def soft_delete(session: Session, obj: Tracked) -> None:
    """Soft-delete ``obj``; the database records when and who (and refuses if not allowed)."""
    obj.deleted_at = func.now()  # the trigger pins it to the transaction's now() anyway
    session.flush()


def restore(session: Session, obj: Tracked) -> None:
    """Bring back a soft-deleted row: admins only, the database refuses anyone else."""
    obj.deleted_at = None
    session.flush()
