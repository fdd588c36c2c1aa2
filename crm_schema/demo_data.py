"""A small, realistic CRM for the demo: generated data, the seed's admin, and some activity
and changes made as real signed-in users so the logs have something to show."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import Connection, text

from crm_schema import seed_data

ADMIN_EMAIL = "stokes@cakeoklahoma.com"
DEMO_SCALE = 0.002


def _ensure_admin(connection: Connection) -> uuid.UUID:
    existing = connection.execute(
        text("SELECT id FROM public.profiles WHERE email = :e"), {"e": ADMIN_EMAIL}
    ).scalar()
    if existing is not None:
        return uuid.UUID(str(existing))
    admin = uuid.uuid4()
    connection.execute(
        # No e-mail yet: one would make the sign-up trigger create an agent's profile.
        text("INSERT INTO auth.users (id) VALUES (:i)"),
        {"i": admin},
    )
    connection.execute(
        text(
            "INSERT INTO public.profiles (id, email, full_name, role) "
            "VALUES (:i, :e, 'Stokes', 'admin')"
        ),
        {"i": admin, "e": ADMIN_EMAIL},
    )
    connection.execute(
        text("UPDATE auth.users SET email = :e WHERE id = :i"), {"i": admin, "e": ADMIN_EMAIL}
    )
    return admin


def _as_user(connection: Connection, user: uuid.UUID) -> None:
    """Claims and role for the rest of this transaction, as PostgREST sets them."""
    claims = json.dumps({"sub": str(user), "role": "authenticated", "aud": "authenticated"})
    connection.execute(
        text(
            "SELECT set_config('request.jwt.claims', :c, true), "
            "set_config('role', 'authenticated', true)"
        ),
        {"c": claims},
    )


def _agents(connection: Connection, limit: int) -> list[uuid.UUID]:
    rows = connection.execute(
        text(
            "SELECT p.id FROM public.profiles p WHERE p.role = 'agent' AND EXISTS "
            "(SELECT 1 FROM public.orders o JOIN public.dispensary_profiles d "
            "ON d.id = o.dispensary_id AND d.assigned_agent_id = p.id WHERE o.agent_id = p.id) "
            "ORDER BY p.email LIMIT :n"
        ),
        {"n": limit},
    ).scalars()
    return [uuid.UUID(str(r)) for r in rows]


def _agent_day(connection: Connection, agent: uuid.UUID) -> None:
    """An agent signs in, looks at an order at one of its dispensaries, edits it, and
    soft-deletes an old note."""
    _as_user(connection, agent)
    connection.execute(
        text(
            "SELECT public.log_user_activity(NULL, 'login', 'system', NULL, "
            '\'{"source": "demo"}\')'
        )
    )
    order = connection.execute(
        text(
            "SELECT o.id FROM public.orders o JOIN public.dispensary_profiles d "
            "ON d.id = o.dispensary_id AND d.assigned_agent_id = :a "
            "WHERE o.agent_id = :a ORDER BY o.order_date DESC LIMIT 1"
        ),
        {"a": agent},
    ).scalar()
    connection.execute(
        text("SELECT public.log_user_activity(NULL, 'view', 'order', :o, '{}')"), {"o": order}
    )
    connection.execute(
        text("UPDATE public.orders SET notes = 'Confirmed delivery window by phone' WHERE id = :o"),
        {"o": order},
    )
    connection.execute(
        text(
            "UPDATE public.communications SET deleted_at = now() WHERE id = (SELECT id FROM "
            "public.communications WHERE agent_id = :a ORDER BY occurred_at LIMIT 1)"
        ),
        {"a": agent},
    )
    connection.commit()


def load(connection: Connection) -> str:
    """Generate the sample CRM and some activity; returns a one-line summary."""
    counts = seed_data.generate(connection, DEMO_SCALE, seed=42)
    _ensure_admin(connection)
    connection.commit()
    agents = _agents(connection, 3)
    for agent in agents:
        _agent_day(connection, agent)
    return (
        f"{counts.users} users and the admin {ADMIN_EMAIL}, {counts.dispensaries} dispensaries, "
        f"{counts.products} "
        f"products, {counts.orders} orders, {counts.order_items} order lines, "
        f"{counts.communications} communications, {counts.tasks} tasks; "
        f"{len(agents)} agents signed in and made changes"
    )
