"""Acting as a Supabase API user inside a test transaction."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import Connection, text


def act_as(connection: Connection, user_id: uuid.UUID | None, role: str = "authenticated") -> None:
    """Switch this transaction to ``role`` with JWT claims for ``user_id``, as PostgREST does.

    Both settings are transaction-local: they end with the test's transaction.
    """
    claims = {"role": role, "aud": role}
    if user_id is not None:
        claims["sub"] = str(user_id)
    connection.execute(
        text(
            "SELECT set_config('request.jwt.claims', :claims, true), "
            "set_config('role', :role, true)"
        ),
        {"claims": json.dumps(claims), "role": role},
    )


def reset_role(connection: Connection) -> None:
    connection.execute(text("RESET ROLE; SELECT set_config('request.jwt.claims', '', true)"))
