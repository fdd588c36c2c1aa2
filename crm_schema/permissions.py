"""Check, grant, deny, revoke and list permissions through the database's own functions,
tables and views, so the app and PostgREST obey the same rules (including RLS: only holders
of ``manage`` on ``permission`` may grant, and never to themselves)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from crm_schema.enums import PermissionType, ResourceType
from crm_schema.models.permissions import UserPermission


def has_permission(
    session: Session, user_id: uuid.UUID, permission: PermissionType, resource: ResourceType
) -> bool:
    """``public.user_has_permission``: role defaults, overrides, expiry, ``manage``."""
    allowed = session.execute(
        text(
            "SELECT public.user_has_permission(:u, CAST(:p AS public.permission_type), "
            "CAST(:r AS public.resource_type))"
        ),
        {"u": user_id, "p": permission.value, "r": resource.value},
    ).scalar()
    return bool(allowed)


def _override(
    session: Session,
    user_id: uuid.UUID,
    permission: PermissionType,
    resource: ResourceType,
    *,
    granted: bool,
    expires_at: dt.datetime | None,
    reason: str | None,
) -> UserPermission:
    # granted_by is the database's: a trigger stamps the writer on every API insert and update.
    values = {
        "user_id": user_id,
        "permission": permission,
        "resource": resource,
        "granted": granted,
        "expires_at": expires_at,
        "reason": reason,
    }
    statement = insert(UserPermission).values(**values)
    upsert = statement.on_conflict_do_update(
        index_elements=["user_id", "permission", "resource"],
        set_={
            "granted": granted,
            "expires_at": expires_at,
            "reason": reason,
        },
    ).returning(UserPermission)
    row: UserPermission = session.scalars(
        upsert, execution_options={"populate_existing": True}
    ).one()
    return row


def grant(
    session: Session,
    user_id: uuid.UUID,
    permission: PermissionType,
    resource: ResourceType,
    *,
    expires_at: dt.datetime | None = None,
    reason: str | None = None,
) -> UserPermission:
    """Allow ``permission`` on ``resource`` for the user (until ``expires_at``, if given)."""
    return _override(
        session, user_id, permission, resource, granted=True, expires_at=expires_at, reason=reason
    )


def deny(
    session: Session,
    user_id: uuid.UUID,
    permission: PermissionType,
    resource: ResourceType,
    *,
    expires_at: dt.datetime | None = None,
    reason: str | None = None,
) -> UserPermission:
    """Explicitly deny it, whatever the user's role allows (until ``expires_at``)."""
    return _override(
        session, user_id, permission, resource, granted=False, expires_at=expires_at, reason=reason
    )


def revoke(
    session: Session, user_id: uuid.UUID, permission: PermissionType, resource: ResourceType
) -> bool:
    """Remove the user's override; the role default applies again. True if one existed."""
    result = session.execute(
        delete(UserPermission).where(
            UserPermission.user_id == user_id,
            UserPermission.permission == permission,
            UserPermission.resource == resource,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class EffectivePermission:
    permission: PermissionType
    resource: ResourceType
    allowed: bool
    source: str  # admin, override, manage override, role default, role manage, none, inactive
    override_expires_at: dt.datetime | None


def effective_permissions(session: Session, user_id: uuid.UUID) -> list[EffectivePermission]:
    """Every permission and resource for the user: allowed or not, and why."""
    rows = session.execute(
        text(
            "SELECT permission::text, resource::text, allowed, source, override_expires_at "
            "FROM public.user_effective_permissions WHERE user_id = :u "
            "ORDER BY resource, permission"
        ),
        {"u": user_id},
    )
    return [
        EffectivePermission(PermissionType(p), ResourceType(r), bool(a), str(s), e)
        for p, r, a, s, e in rows
    ]
