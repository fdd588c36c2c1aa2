"""``dispensary_profiles``: Oklahoma dispensaries, their OMMA licence and assigned agent."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_schema.enums import DispensaryStatus, LicenseStatus
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
    uuid_pk,
)

if TYPE_CHECKING:
    from crm_schema.models.communications import Communication
    from crm_schema.models.orders import Order
    from crm_schema.models.profiles import Profile
    from crm_schema.models.tasks import Task


class DispensaryProfile(Tracked, HasMetadata, Base):
    __tablename__ = "dispensary_profiles"
    __table_args__ = (
        *tracking_checks(),
        *length_checks("dispensary_profiles"),
        CheckConstraint(f"email IS NULL OR email ~* {EMAIL_PATTERN}", name="email_format"),
        CheckConstraint(
            "license_number IS NULL OR license_number ~ '^[A-Z]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$'",
            name="license_number_format",
        ),
        CheckConstraint("state ~ '^[A-Z]{2}$'", name="state"),
        CheckConstraint(
            "postal_code IS NULL OR postal_code ~ '^[0-9]{5}(-[0-9]{4})?$'", name="postal_code"
        ),
        Index(
            "dispensary_profiles_agent_name_live_idx",
            "assigned_agent_id",
            "name",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("dispensary_profiles_metadata_idx", "metadata", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(doc="Legal business name.")
    dba_name: Mapped[str | None] = mapped_column(doc="Trade name on the storefront.")
    license_number: Mapped[str | None] = mapped_column(
        unique=True, doc="OMMA dispensary licence number, e.g. DAAA-ABCD-1234."
    )
    license_status: Mapped[LicenseStatus] = mapped_column(
        pg_enum(LicenseStatus, "license_status"), server_default=LicenseStatus.ACTIVE.value
    )
    license_expires_on: Mapped[dt.date | None]
    status: Mapped[DispensaryStatus] = mapped_column(
        pg_enum(DispensaryStatus, "dispensary_status"),
        server_default=DispensaryStatus.PROSPECT.value,
    )
    contact_name: Mapped[str | None]
    phone: Mapped[str | None]
    email: Mapped[str | None]
    address_line1: Mapped[str | None]
    address_line2: Mapped[str | None]
    city: Mapped[str | None]
    county: Mapped[str | None]
    state: Mapped[str] = mapped_column(server_default="OK")
    postal_code: Mapped[str | None]
    assigned_agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL"), index=True
    )
    notes: Mapped[str | None]
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    assigned_agent: Mapped[Profile | None] = relationship(back_populates="dispensaries")
    orders: Mapped[list[Order]] = relationship(back_populates="dispensary")
    communications: Mapped[list[Communication]] = relationship(back_populates="dispensary")
    tasks: Mapped[list[Task]] = relationship(back_populates="dispensary")

    def __repr__(self) -> str:
        return f"<DispensaryProfile {self.name} {self.license_number or ''}>"
