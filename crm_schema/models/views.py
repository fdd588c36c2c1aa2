"""Read-only models of the five views revision 0007 creates (all ``security_invoker``: a
query through them meets the caller's RLS on the tables underneath).

They live on a MetaData of their own, so autogenerate and ``metadata.create_all`` never
take them for tables. Writing through them is refused in Python before anything reaches the
database: PostgreSQL would let a direct or ``service_role`` session insert into a simple view
such as ``active_profiles``, and that is never what a caller of these classes means.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, MetaData, Numeric, event
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, ORMExecuteState, Session, mapped_column
from sqlalchemy.types import Text

from crm_schema.enums import (
    ActivityType,
    ChangeOperation,
    DispensaryStatus,
    LicenseStatus,
    PermissionType,
    ResourceType,
    UserRole,
)
from crm_schema.errors import CrmError
from crm_schema.models.base import Base, JsonObject, pg_enum

view_metadata = MetaData()


class ReadOnlyView(CrmError, TypeError):  # noqa: N818 - reads as what it is
    """A write through a view model."""


class View(DeclarativeBase):
    """Base of the view models: same column types as the table models, separate MetaData."""

    metadata = view_metadata
    type_annotation_map = Base.type_annotation_map


class ActiveProfile(View):
    """Users who can sign in: active and not deleted."""

    __tablename__ = "active_profiles"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str]
    full_name: Mapped[str | None]
    role: Mapped[UserRole] = mapped_column(pg_enum(UserRole, "user_role"))
    phone: Mapped[str | None]
    territory: Mapped[str | None]
    last_login_at: Mapped[dt.datetime | None]
    login_count: Mapped[int]
    created_at: Mapped[dt.datetime]


class UserEffectivePermission(View):
    """For each user, permission and resource: allowed or not, and why (``source``)."""

    __tablename__ = "user_effective_permissions"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str]
    role: Mapped[UserRole] = mapped_column(pg_enum(UserRole, "user_role"))
    permission: Mapped[PermissionType] = mapped_column(
        pg_enum(PermissionType, "permission_type"), primary_key=True
    )
    resource: Mapped[ResourceType] = mapped_column(
        pg_enum(ResourceType, "resource_type"), primary_key=True
    )
    allowed: Mapped[bool]
    source: Mapped[str] = mapped_column(
        doc="inactive, admin, override, manage override, role default, role manage or none"
    )
    override_expires_at: Mapped[dt.datetime | None]


class RecentActivity(View):
    """The last 30 days of the activity log, with the user's e-mail and name."""

    __tablename__ = "recent_activity"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime]
    user_id: Mapped[uuid.UUID | None]
    email: Mapped[str | None]
    full_name: Mapped[str | None]
    activity: Mapped[ActivityType] = mapped_column(pg_enum(ActivityType, "activity_type"))
    resource: Mapped[ResourceType | None] = mapped_column(pg_enum(ResourceType, "resource_type"))
    resource_id: Mapped[uuid.UUID | None]
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None]
    metadata_: Mapped[JsonObject] = mapped_column("metadata", JSONB)


class DispensarySummary(View):
    """Per live dispensary: agent, orders and revenue, last contact, open tasks, activity."""

    __tablename__ = "dispensary_summary"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str]
    license_number: Mapped[str | None]
    license_status: Mapped[LicenseStatus] = mapped_column(pg_enum(LicenseStatus, "license_status"))
    status: Mapped[DispensaryStatus] = mapped_column(pg_enum(DispensaryStatus, "dispensary_status"))
    city: Mapped[str | None]
    county: Mapped[str | None]
    assigned_agent_id: Mapped[uuid.UUID | None]
    agent_name: Mapped[str | None]
    order_count: Mapped[int] = mapped_column(BigInteger)
    revenue: Mapped[Decimal] = mapped_column(Numeric)
    last_order_date: Mapped[dt.date | None]
    last_contact_at: Mapped[dt.datetime | None]
    open_tasks: Mapped[int] = mapped_column(BigInteger)
    last_activity_at: Mapped[dt.datetime | None]


class RecordChangeHistory(View):
    """The change log with the acting user's e-mail; filter by table_name and record_id."""

    __tablename__ = "record_change_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    table_name: Mapped[str]
    record_id: Mapped[uuid.UUID]
    operation: Mapped[ChangeOperation] = mapped_column(pg_enum(ChangeOperation, "change_operation"))
    changed_columns: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    old_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    new_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    changed_by: Mapped[uuid.UUID | None]
    changed_by_email: Mapped[str | None]
    changed_at: Mapped[dt.datetime]
    transaction_id: Mapped[int] = mapped_column(BigInteger)


VIEW_MODELS: tuple[type[View], ...] = (
    ActiveProfile,
    UserEffectivePermission,
    RecentActivity,
    DispensarySummary,
    RecordChangeHistory,
)


def _refuse(what: str, view: str) -> ReadOnlyView:
    return ReadOnlyView(f"{view} is a read-only view: {what} it is refused; write to its tables")


@event.listens_for(Session, "before_flush")
def _refuse_unit_of_work(session: Session, *_: Any) -> None:
    for verb, objects in (
        ("adding a row to", session.new),
        ("changing a row of", session.dirty),
        ("deleting a row of", session.deleted),
    ):
        for obj in objects:
            if isinstance(obj, View):
                raise _refuse(verb, type(obj).__tablename__)


@event.listens_for(Session, "do_orm_execute")
def _refuse_statements(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        for mapper in state.all_mappers:
            if issubclass(mapper.class_, View):
                raise _refuse("an INSERT, UPDATE or DELETE on", mapper.class_.__tablename__)
