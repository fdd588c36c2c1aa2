"""``profiles``: one row per Supabase user, carrying the CRM role (admin, manager, agent)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_schema.enums import UserRole
from crm_schema.models.base import (
    EMAIL_PATTERN,
    Base,
    HasMetadata,
    Tracked,
    created_at,
    length_checks,
    pg_enum,
    tracking_checks,
    updated_at,
)

if TYPE_CHECKING:
    from crm_schema.models.dispensaries import DispensaryProfile
    from crm_schema.models.permissions import UserPermission


class Profile(Tracked, HasMetadata, Base):
    __tablename__ = "profiles"
    __table_args__ = (
        *tracking_checks(),
        *length_checks("profiles"),
        CheckConstraint(f"email ~* {EMAIL_PATTERN}", name="email_format"),
        CheckConstraint("login_count >= 0", name="login_count"),
        Index("profiles_metadata_idx", "metadata", postgresql_using="gin"),
    )

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
    is_active: Mapped[bool] = mapped_column(
        server_default=text("true"), doc="False locks the user out of every permission."
    )
    last_login_at: Mapped[dt.datetime | None]
    login_count: Mapped[int] = mapped_column(server_default=text("0"))
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    permissions: Mapped[list[UserPermission]] = relationship(
        back_populates="user", passive_deletes=True, doc="Per-user overrides."
    )
    dispensaries: Mapped[list[DispensaryProfile]] = relationship(
        back_populates="assigned_agent", foreign_keys="DispensaryProfile.assigned_agent_id"
    )

    def __repr__(self) -> str:
        return f"<Profile {self.email} ({self.role})>"
