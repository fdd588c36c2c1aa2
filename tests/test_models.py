"""The models and enums describe the migrated schema and work through the ORM."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import CheckConstraint, Connection, select, text
from sqlalchemy.orm import Session

from crm_schema.enums import PG_ENUMS, OrderStatus, ProductCategory
from crm_schema.models import (
    NAMING_CONVENTION,
    Order,
    OrderItem,
    Product,
    include_name,
    metadata,
)
from tests import sample_data as s


@pytest.mark.parametrize("type_name", sorted(PG_ENUMS))
def test_python_enums_mirror_postgres_enums(conn: Connection, type_name: str) -> None:
    labels = conn.execute(
        text(
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
            "WHERE t.typname = :name AND t.typnamespace = 'public'::regnamespace "
            "ORDER BY e.enumsortorder"
        ),
        {"name": type_name},
    ).scalars()
    assert list(labels) == [member.value for member in PG_ENUMS[type_name]]


def test_every_postgres_enum_has_a_python_mirror(conn: Connection) -> None:
    names = conn.execute(
        text(
            "SELECT typname FROM pg_type "
            "WHERE typtype = 'e' AND typnamespace = 'public'::regnamespace"
        )
    ).scalars()
    assert set(names) == set(PG_ENUMS)


def test_one_metadata_with_the_naming_convention() -> None:
    assert metadata.naming_convention == NAMING_CONVENTION
    assert all(table.metadata is metadata for table in metadata.sorted_tables)


def test_autogenerate_skips_only_alembic_version_and_the_partitions(conn: Connection) -> None:
    # Otherwise the models-match-schema test could pass by comparing nothing.
    tables = conn.execute(
        text(
            "SELECT relname, relispartition FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')"
        )
    ).all()
    skipped = {name for name, _ in tables if not include_name(name, "table", {})}
    partitions = {name for name, is_partition in tables if is_partition}
    assert len(partitions) == 13  # 12 months and the catch-all
    assert skipped == partitions | {"alembic_version"}
    public_models = {t.name for t in metadata.sorted_tables if t.schema is None}
    assert public_models <= {name for name, _ in tables} - skipped


def test_model_check_constraints_match_the_database(conn: Connection) -> None:
    # Autogenerate (and so pytest-alembic's model test) does not compare CHECK constraints.
    declared = {
        (table.name, str(constraint.name))
        for table in metadata.sorted_tables
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }
    migrated = conn.execute(
        text(
            "SELECT c.relname, k.conname FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid "
            "WHERE k.contype = 'c' AND c.relnamespace = 'public'::regnamespace "
            "AND NOT c.relispartition"
        )
    ).all()
    assert {tuple(row) for row in migrated} == declared


def test_orm_round_trip_with_enums_and_relationships(conn: Connection) -> None:
    s.load(conn)
    with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
        product = Product(
            name="Tulsa Tincture 30ml",
            sku=f"OK-TN-{uuid.uuid4().hex[:6]}",
            category=ProductCategory.TINCTURE,
            unit_price=Decimal("35.00"),
        )
        order = Order(dispensary_id=s.DISPENSARY_A, agent_id=s.AGENT_A)
        order.items.append(OrderItem(product=product, quantity=3, unit_price=Decimal("35.00")))
        session.add(order)
        session.flush()
        loaded = session.scalars(select(Order).where(Order.id == order.id)).one()
        assert loaded.status is OrderStatus.DRAFT  # the server default, read back as the enum
        assert loaded.order_number > 0
        assert loaded.items[0].product.category is ProductCategory.TINCTURE
