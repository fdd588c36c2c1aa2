"""``orders`` and ``order_items``: wholesale orders a dispensary places through its agent."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Index, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_schema.enums import OrderStatus
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
    from crm_schema.models.products import Product
    from crm_schema.models.profiles import Profile


class Order(Tracked, HasMetadata, Base):
    __tablename__ = "orders"
    __table_args__ = (
        *tracking_checks(),
        *length_checks("orders"),
        CheckConstraint("total_amount >= 0", name="total_amount"),
        Index(
            "orders_dispensary_date_live_idx",
            "dispensary_id",
            text("order_date DESC"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "orders_agent_date_live_idx",
            "agent_id",
            text("order_date DESC"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_number: Mapped[int] = mapped_column(
        BigInteger, Identity(), unique=True, doc="Human-facing order number."
    )
    dispensary_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dispensary_profiles.id", ondelete="RESTRICT"), index=True
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[OrderStatus] = mapped_column(
        pg_enum(OrderStatus, "order_status"), server_default=OrderStatus.DRAFT.value
    )
    order_date: Mapped[dt.date] = mapped_column(server_default=text("CURRENT_DATE"))
    requested_delivery_date: Mapped[dt.date | None]
    delivered_at: Mapped[dt.datetime | None]
    total_amount: Mapped[Decimal] = mapped_column(server_default="0")
    notes: Mapped[str | None]
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    dispensary: Mapped[DispensaryProfile] = relationship(back_populates="orders")
    agent: Mapped[Profile | None] = relationship()
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", passive_deletes=True
    )


class OrderItem(Tracked, Base):
    __tablename__ = "order_items"
    __table_args__ = (
        *tracking_checks(with_metadata=False),
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint("unit_price >= 0", name="unit_price"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("products.id", ondelete="RESTRICT"), index=True
    )
    quantity: Mapped[int]
    unit_price: Mapped[Decimal] = mapped_column(doc="Price per unit on this order.")
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    order: Mapped[Order] = relationship(back_populates="items")
    product: Mapped[Product] = relationship()
