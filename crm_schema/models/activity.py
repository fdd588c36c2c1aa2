"""``user_activity_log``: what users did, range-partitioned by month on ``created_at``.

Rows are written through ``public.log_user_activity``. The partitions themselves are not
models: they come and go with the maintenance functions.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, Index, text
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm_schema.enums import ActivityType, ResourceType
from crm_schema.models.base import METADATA_BYTES, Base, JsonObject, length_checks, pg_enum


class UserActivityLog(Base):
    __tablename__ = "user_activity_log"
    __table_args__ = (
        CheckConstraint("jsonb_typeof(metadata) = 'object'", name="metadata"),
        CheckConstraint(f"octet_length(metadata::text) <= {METADATA_BYTES}", name="metadata_size"),
        *length_checks("user_activity_log"),
        Index("user_activity_log_user_time_idx", "user_id", text("created_at DESC")),
        Index(
            "user_activity_log_resource_idx",
            "resource",
            "resource_id",
            text("created_at DESC"),
            postgresql_where=text("resource_id IS NOT NULL"),
        ),
        Index("user_activity_log_metadata_idx", "metadata", postgresql_using="gin"),
        {
            "postgresql_partition_by": "RANGE (created_at)",
            "comment": "What users did (logins, views, exports ...), "
            "written through public.log_user_activity.",
        },
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        primary_key=True, server_default=text("now()"), doc="The partition key."
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(doc="Who acted (no FK: logs outlive users).")
    activity: Mapped[ActivityType] = mapped_column(pg_enum(ActivityType, "activity_type"))
    resource: Mapped[ResourceType | None] = mapped_column(pg_enum(ResourceType, "resource_type"))
    resource_id: Mapped[uuid.UUID | None]
    metadata_: Mapped[JsonObject] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None]
