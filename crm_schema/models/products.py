"""``products``: the catalogue agents sell to dispensaries."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import CheckConstraint, Numeric
from sqlalchemy.orm import Mapped, mapped_column

from crm_schema.enums import ProductCategory, StrainType
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

Percent = Numeric(5, 2)


class Product(Tracked, HasMetadata, Base):
    __tablename__ = "products"
    __table_args__ = (
        *tracking_checks(),
        *length_checks("products"),
        CheckConstraint("unit_price >= 0", name="unit_price"),
        CheckConstraint("thc_percent BETWEEN 0 AND 100", name="thc_percent"),
        CheckConstraint("cbd_percent BETWEEN 0 AND 100", name="cbd_percent"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str]
    sku: Mapped[str] = mapped_column(unique=True)
    category: Mapped[ProductCategory] = mapped_column(pg_enum(ProductCategory, "product_category"))
    strain_type: Mapped[StrainType | None] = mapped_column(pg_enum(StrainType, "strain_type"))
    brand: Mapped[str | None]
    description: Mapped[str | None]
    thc_percent: Mapped[Decimal | None] = mapped_column(Percent)
    cbd_percent: Mapped[Decimal | None] = mapped_column(Percent)
    unit_size: Mapped[str | None] = mapped_column(
        doc="Pack size as sold, e.g. '3.5g' or '1g cart'."
    )
    unit_price: Mapped[Decimal]
    is_available: Mapped[bool] = mapped_column(server_default="true")
    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()

    def __repr__(self) -> str:
        return f"<Product {self.sku} {self.name}>"
