"""``change_log``: one row per real change to a tracked table, written by triggers only."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Identity, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm_schema.enums import ChangeOperation
from crm_schema.models.base import Base, pg_enum


class ChangeLog(Base):
    __tablename__ = "change_log"
    __table_args__ = (
        Index("change_log_record_idx", "record_id", text("changed_at DESC")),
        {"comment": "One row per real change to a tracked table, written by triggers only."},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    table_name: Mapped[str]
    record_id: Mapped[uuid.UUID]
    operation: Mapped[ChangeOperation] = mapped_column(pg_enum(ChangeOperation, "change_operation"))
    old_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    new_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    changed_columns: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    changed_by: Mapped[uuid.UUID | None] = mapped_column(doc="auth.uid() of the acting user.")
    changed_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    transaction_id: Mapped[int] = mapped_column(BigInteger, server_default=text("txid_current()"))
