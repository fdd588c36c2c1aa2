"""Write the activity log through ``public.log_user_activity``, as PostgREST clients do."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from crm_schema.enums import ActivityType, ResourceType


def log_activity(
    session: Session,
    activity: ActivityType,
    resource: ResourceType | None = None,
    resource_id: uuid.UUID | None = None,
    metadata: dict[str, Any] | None = None,
    user_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Log one activity and return its id. In a user session ``user_id`` may only be the
    user itself (None means itself); the database refuses anything else."""
    new_id = session.execute(
        text(
            "SELECT public.log_user_activity(:u, CAST(:a AS public.activity_type), "
            "CAST(:r AS public.resource_type), :rid, CAST(:m AS jsonb))"
        ),
        {
            "u": user_id,
            "a": activity.value,
            "r": resource.value if resource else None,
            "rid": resource_id,
            "m": json.dumps(metadata or {}),
        },
    ).scalar_one()
    return uuid.UUID(str(new_id))
