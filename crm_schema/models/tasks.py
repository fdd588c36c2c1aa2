"""``tasks``: follow-ups assigned to CRM users, optionally about a dispensary."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_schema.enums import TaskPriority, TaskStatus
from crm_schema.models.base import (
    Base,
    HasMetadata,
    Tracked,
    created_at,
    length_checks,
    pg_enum,
    tracking_checks,
    updated_at,
    uuid_pk,
)

if TYPE_CHECKING:
    from crm_schema.models.dispensaries import DispensaryProfile
    from crm_schema.models.profiles import Profile


class Task(Tracked, HasMetadata, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        *tracking_checks(),
        *length_checks("tasks"),
        Index(
            "tasks_assignee_open_idx",
            "assigned_to",
            "due_date",
            postgresql_where=text("deleted_at IS NULL AND status IN ('pending', 'in_progress')"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    title: Mapped[str]
    description: Mapped[str | None]
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL"), index=True
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL"), index=True
    )
    dispensary_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("dispensary_profiles.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[TaskStatus] = mapped_column(
        pg_enum(TaskStatus, "task_status"), server_default=TaskStatus.PENDING.value
    )
    priority: Mapped[TaskPriority] = mapped_column(
        pg_enum(TaskPriority, "task_priority"), server_default=TaskPriority.MEDIUM.value
    )
    due_date: Mapped[dt.date | None]
    completed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    assignee: Mapped[Profile | None] = relationship(foreign_keys=[assigned_to])
    creator: Mapped[Profile | None] = relationship(foreign_keys=[created_by])
    dispensary: Mapped[DispensaryProfile | None] = relationship(back_populates="tasks")
