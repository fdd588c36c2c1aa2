"""Sessions that act as a Supabase user, so the app meets the same Row Level Security as
PostgREST.

PostgREST runs each request in a transaction that starts with
``set_config('request.jwt.claims', <claims>, true)`` and ``set_config('role', <role>, true)``.
:func:`user_session` and :func:`service_session` do exactly that at the start of every
transaction of the session. Both settings are transaction-local: when the transaction ends
they are gone, so a pooled connection never carries one user's identity to the next.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, SessionTransaction

from crm_schema.db import normalize_url

_CLAIMS = "crm_schema.claims"


def app_engine(url: str | URL, **kwargs: Any) -> Engine:
    """A pooled engine for an application (``postgresql://`` URLs get the psycopg 3 driver)."""
    return create_engine(normalize_url(url), **kwargs)


def user_claims(
    user_id: uuid.UUID, *, email: str | None = None, role: str = "authenticated"
) -> dict[str, Any]:
    """JWT claims shaped like the ones Supabase Auth issues for a signed-in user."""
    claims: dict[str, Any] = {"sub": str(user_id), "role": role, "aud": role}
    if email is not None:
        claims["email"] = email
    return claims


def _apply_claims(session: Session, _: SessionTransaction, connection: Connection) -> None:
    claims, role = session.info[_CLAIMS]
    connection.execute(
        text(
            "SELECT set_config('request.jwt.claims', :claims, true), "
            "set_config('role', :role, true)"
        ),
        {"claims": claims, "role": role},
    )


def _session_as(bind: Engine | Connection, claims: dict[str, Any], role: str) -> Session:
    session = Session(bind=bind)
    session.info[_CLAIMS] = (json.dumps(claims), role)
    event.listen(session, "after_begin", _apply_claims)
    return session


def user_session(
    bind: Engine | Connection, user_id: uuid.UUID, *, email: str | None = None
) -> Session:
    """A session whose every transaction runs as the signed-in user ``user_id``."""
    return _session_as(bind, user_claims(user_id, email=email), "authenticated")


def service_session(bind: Engine | Connection) -> Session:
    """A session running as ``service_role`` (bypasses RLS, as Supabase's service key does)."""
    return _session_as(bind, {"role": "service_role"}, "service_role")
