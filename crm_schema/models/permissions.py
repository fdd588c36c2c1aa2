"""``role_permissions`` (role defaults) and ``user_permissions`` (per-user overrides).

``public.user_has_permission`` decides from both: admins may do everything; otherwise an
unexpired override for the user decides, then the role default; ``manage`` on a resource
implies every other permission on it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_schema.enums import PermissionType, ResourceType, UserRole
from crm_schema.models.base import (
    Base,
    created_at,
    length_checks,
    pg_enum,
    updated_at,
    uuid_pk,
)

if TYPE_CHECKING:
    from crm_schema.models.profiles import Profile


class RolePermission(Base):
    __tablename__ = "role_permissions"
    __table_args__ = (
        UniqueConstraint("role", "permission", "resource"),
        {
            "comment": "What each role may do on each resource by default; "
            "user_permissions overrides it."
        },
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    role: Mapped[UserRole] = mapped_column(pg_enum(UserRole, "user_role"))
    permission: Mapped[PermissionType] = mapped_column(pg_enum(PermissionType, "permission_type"))
    resource: Mapped[ResourceType] = mapped_column(pg_enum(ResourceType, "resource_type"))
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()


class UserPermission(Base):
    __tablename__ = "user_permissions"
    __table_args__ = (
        UniqueConstraint("user_id", "permission", "resource"),
        CheckConstraint("expires_at IS NULL OR expires_at > created_at", name="expires_at"),
        *length_checks("user_permissions"),
        {
            "comment": "Per-user overrides of the role defaults: granted = true allows, "
            "false denies; an expired row (expires_at in the past) no longer applies."
        },
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    permission: Mapped[PermissionType] = mapped_column(pg_enum(PermissionType, "permission_type"))
    resource: Mapped[ResourceType] = mapped_column(pg_enum(ResourceType, "resource_type"))
    granted: Mapped[bool] = mapped_column(
        server_default=text("true"), doc="True allows, false explicitly denies."
    )
    expires_at: Mapped[dt.datetime | None] = mapped_column(
        doc="After this the row no longer applies."
    )
    granted_by: Mapped[uuid.UUID | None]
    reason: Mapped[str | None]
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    user: Mapped[Profile] = relationship(back_populates="permissions")
