"""``profiles``: one row per Supabase user, carrying the CRM role (admin, manager, agent)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_schema.enums import UserRole
from crm_schema.models.base import Base, created_at, pg_enum, updated_at

if TYPE_CHECKING:
    from crm_schema.models.dispensaries import DispensaryProfile


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth.users.id", ondelete="CASCADE"),
        primary_key=True,
        doc="Same id as the Supabase auth user.",
    )
    email: Mapped[str] = mapped_column(unique=True)
    full_name: Mapped[str | None]
    role: Mapped[UserRole] = mapped_column(
        pg_enum(UserRole, "user_role"), server_default=UserRole.AGENT.value
    )
    phone: Mapped[str | None]
    territory: Mapped[str | None] = mapped_column(doc="Sales territory, e.g. 'Tulsa metro'.")
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    dispensaries: Mapped[list[DispensaryProfile]] = relationship(
        back_populates="assigned_agent", foreign_keys="DispensaryProfile.assigned_agent_id"
    )

    def __repr__(self) -> str:
        return f"<Profile {self.email} ({self.role})>"
