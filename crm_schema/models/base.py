"""The one MetaData, its naming convention, and the column types every model shares."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Enum, MetaData, Numeric, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

# PostgreSQL's own default names (profiles_pkey, orders_agent_id_fkey, products_sku_key), so
# constraints written as plain SQL in a revision and the models name things the same way.
NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "ck": "%(table_name)s_%(constraint_name)s_check",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

Money = Numeric(12, 2)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dt.datetime: DateTime(timezone=True),
        uuid.UUID: UUID(as_uuid=True),
        str: Text(),
        Decimal: Money,
    }


def pg_enum(python_enum: type[StrEnum], name: str) -> Enum:
    """A native PostgreSQL enum column type; the migrations create and drop the type."""
    return Enum(
        python_enum,
        name=name,
        values_callable=lambda members: [m.value for m in members],
        create_type=False,
        validate_strings=True,
    )


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, server_default=text("gen_random_uuid()"))


def created_at() -> Mapped[dt.datetime]:
    return mapped_column(server_default=func.now())


def updated_at() -> Mapped[dt.datetime]:
    return mapped_column(server_default=func.now())


JsonObject = dict[str, Any]


class Tracked:
    """Edit tracking and soft delete, on every tracked table (revision 0003).

    The database maintains these: triggers bump ``version`` and ``edit_count`` and set
    ``updated_by`` on every update, whatever the client sends; on insert they take their
    defaults (API users may not name them). ``deleted_at`` set means
    soft-deleted: the row stays (and keeps its references) but leaves non-admin reads.
    """

    version: Mapped[int] = mapped_column(
        server_default=text("1"), doc="Starts at 1; also the ORM's optimistic-locking counter."
    )
    edit_count: Mapped[int] = mapped_column(server_default=text("0"))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(
        server_default=text("auth.uid()"), doc="Who last changed the row (on insert: who made it)."
    )
    deleted_at: Mapped[dt.datetime | None] = mapped_column(doc="Set when soft-deleted.")
    deleted_by: Mapped[uuid.UUID | None]

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # The database bumps version on every real change (phase 3's trigger): the ORM only
        # checks it (UPDATE ... WHERE version = :seen) and reads the new value back.
        table = cls.__table__  # type: ignore[attr-defined]  # set before mapper args are read
        return {"version_id_col": table.c.version, "version_id_generator": False}


class HasMetadata:
    """A free-form jsonb object (``metadata`` in the database; the name is taken in Python)."""

    @declared_attr
    def metadata_(cls) -> Mapped[JsonObject]:
        return mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))


EMAIL_PATTERN = r"'^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'"


def tracking_checks(*, with_metadata: bool = True) -> tuple[CheckConstraint, ...]:
    """The checks revision 0004 puts on every tracked table (named ``<table>_<name>_check``)."""
    checks: tuple[CheckConstraint, ...] = (
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint("edit_count >= 0", name="edit_count"),
        CheckConstraint("deleted_by IS NULL OR deleted_at IS NOT NULL", name="deleted_by"),
    )
    if with_metadata:
        checks += (
            CheckConstraint("jsonb_typeof(metadata) = 'object'", name="metadata"),
            CheckConstraint(
                f"octet_length(metadata::text) <= {METADATA_BYTES}", name="metadata_size"
            ),
        )
    return checks


# Size bounds on what users write (revision 0004; docs/access-model.md lists them).
METADATA_BYTES = 8192
TEXT_BOUNDS: dict[str, dict[str, int]] = {
    "profiles": {"email": 320, "full_name": 200, "phone": 40, "territory": 200},
    "dispensary_profiles": {
        "name": 200,
        "dba_name": 200,
        "contact_name": 200,
        "phone": 40,
        "email": 320,
        "address_line1": 200,
        "address_line2": 200,
        "city": 100,
        "county": 100,
        "notes": 10000,
    },
    "products": {"name": 200, "sku": 64, "brand": 200, "description": 10000, "unit_size": 64},
    "orders": {"notes": 10000},
    "communications": {"subject": 500, "body": 20000},
    "tasks": {"title": 500, "description": 10000},
    "user_permissions": {"reason": 1000},
    "user_activity_log": {"user_agent": 512},
}


def length_checks(table: str) -> tuple[CheckConstraint, ...]:
    """``<table>_<column>_length_check`` for each bounded text column of ``table``."""
    return tuple(
        CheckConstraint(f"char_length({column}) <= {limit}", name=f"{column}_length")
        for column, limit in TEXT_BOUNDS[table].items()
    )


# Objects the models deliberately do not describe as tables, so autogenerate leaves them
# alone: Alembic's own table, the activity log's partitions, which the maintenance functions
# create and detach at run time (the partitioned parent is a model), and revision 0007's
# views (read-only models on a MetaData of their own, crm_schema.models.views).
VIEW_NAMES = frozenset(
    {
        "active_profiles",
        "user_effective_permissions",
        "recent_activity",
        "dispensary_summary",
        "record_change_history",
    }
)
EXCLUDED_TABLES = frozenset({"alembic_version", "user_activity_overflow"}) | VIEW_NAMES
ACTIVITY_PARTITION = re.compile(r"^user_activity_log_\d{4}_\d{2}$")


def is_excluded_table(name: str | None) -> bool:
    return name in EXCLUDED_TABLES or bool(name and ACTIVITY_PARTITION.match(name))


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` hook: compare only this project's objects in ``public``."""
    if type_ == "schema":
        return name in (None, "public")
    if type_ == "table":
        return not is_excluded_table(name)
    return True


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic ``include_object`` hook: leave model tables outside ``public`` (Supabase's
    ``auth.users``) alone even when a caller asks autogenerate to include every schema."""
    if type_ == "table":
        return getattr(obj, "schema", None) in (None, "public") and not is_excluded_table(name)
    return True


__all__: Sequence[str] = (
    "NAMING_CONVENTION",
    "Base",
    "HasMetadata",
    "JsonObject",
    "Money",
    "Tracked",
    "created_at",
    "include_name",
    "include_object",
    "length_checks",
    "metadata",
    "pg_enum",
    "tracking_checks",
    "updated_at",
    "uuid_pk",
)
