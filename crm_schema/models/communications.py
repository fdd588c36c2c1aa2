"""``communications``: calls, e-mails, visits and notes with a dispensary."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_schema.enums import CommunicationType
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


class Communication(Tracked, HasMetadata, Base):
    __tablename__ = "communications"
    __table_args__ = (
        *tracking_checks(),
        *length_checks("communications"),
        Index(
            "communications_dispensary_time_live_idx",
            "dispensary_id",
            text("occurred_at DESC"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    dispensary_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dispensary_profiles.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL"), index=True
    )
    type: Mapped[CommunicationType] = mapped_column(
        pg_enum(CommunicationType, "communication_type")
    )
    subject: Mapped[str | None]
    body: Mapped[str | None]
    occurred_at: Mapped[dt.datetime] = created_at()
    follow_up_on: Mapped[dt.date | None]
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    dispensary: Mapped[DispensaryProfile] = relationship(back_populates="communications")
    agent: Mapped[Profile | None] = relationship()
