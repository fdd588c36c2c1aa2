"""The one MetaData, its naming convention, and the column types every model shares."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData, Numeric, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


# Objects the models deliberately do not describe, so autogenerate leaves them alone.
EXCLUDED_TABLES = frozenset({"alembic_version"})


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` hook: compare only this project's objects in ``public``."""
    if type_ == "schema":
        return name in (None, "public")
    if type_ == "table":
        return name not in EXCLUDED_TABLES
    return True


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic ``include_object`` hook: leave model tables outside ``public`` (Supabase's
    ``auth.users``) alone even when a caller asks autogenerate to include every schema."""
    if type_ == "table":
        return getattr(obj, "schema", None) in (None, "public") and name not in EXCLUDED_TABLES
    return True


__all__: Sequence[str] = (
    "NAMING_CONVENTION",
    "Base",
    "Money",
    "created_at",
    "include_name",
    "include_object",
    "metadata",
    "pg_enum",
    "updated_at",
    "uuid_pk",
)
