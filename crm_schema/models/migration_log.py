"""``migration_log``: the seed's Migration Log Template, one row per ``crm-schema upgrade``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm_schema.models.base import Base, created_at, uuid_pk


class MigrationLog(Base):
    __tablename__ = "migration_log"
    __table_args__ = (
        CheckConstraint(
            "verification_status IN ('PASS', 'FAIL', 'NOT RUN')", name="verification_status"
        ),
        {"comment": "The seed's Migration Log Template, one row per crm-schema upgrade run."},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    migration_date: Mapped[dt.date]
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    executed_by: Mapped[str]
    from_revision: Mapped[str | None]
    to_revision: Mapped[str | None]
    verification_status: Mapped[str]
    issues_encountered: Mapped[str | None]
    rollback_required: Mapped[bool] = mapped_column(server_default=text("false"))
    notes: Mapped[str | None]
    phases: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb"), doc="Each revision applied, with its time."
    )
    created_at: Mapped[dt.datetime] = created_at()
