"""Revision 0001 creates what Supabase provides only where it is missing, and its downgrade
removes only what it created."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from tests import catalog

# A stand-in for Supabase's own objects: same names, different bodies, no marker comment.
SUPABASE_LIKE = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text, instance_id uuid);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT '11111111-1111-4111-8111-111111111111'::uuid $$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$ SELECT 'supabase'::text $$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT '{}'::jsonb $$;
"""


def _auth_state(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    snap = catalog.snapshot(connection)
    return {k: [r for r in v if "auth" in map(str, r[:2])] for k, v in snap.items()}


def test_on_supabase_it_changes_nothing_and_removes_nothing(
    empty_db_url: URL, make_engine: Any
) -> None:
    engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text(SUPABASE_LIKE))
    with engine.connect() as connection:
        before = catalog.snapshot(connection)
    config = migrations.make_config(empty_db_url)
    for _ in range(2):  # run twice: still nothing
        command.upgrade(config, "0001_supabase_compat")
        with engine.connect() as connection:
            assert catalog.diff(before, catalog.snapshot(connection)) == ""
            assert connection.execute(text("SELECT auth.role()")).scalar() == "supabase"
        command.downgrade(config, "base")
        with engine.connect() as connection:
            assert catalog.diff(before, catalog.snapshot(connection)) == ""


def test_partial_install_gets_only_the_missing_piece(empty_db_url: URL, make_engine: Any) -> None:
    engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text(SUPABASE_LIKE))
        connection.execute(text("DROP FUNCTION auth.jwt()"))
    config = migrations.make_config(empty_db_url)
    command.upgrade(config, "0001_supabase_compat")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT auth.role()")).scalar() == "supabase"
        assert connection.execute(text("SELECT to_regprocedure('auth.jwt()') IS NOT NULL")).scalar()
    command.downgrade(config, "base")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT to_regprocedure('auth.jwt()')")).scalar() is None
        assert connection.execute(text("SELECT auth.role()")).scalar() == "supabase"
        assert connection.execute(text("SELECT to_regclass('auth.users')")).scalar() is not None


def test_on_vanilla_postgres_it_creates_and_removes_the_shim(
    empty_db_url: URL, make_engine: Any
) -> None:
    engine = make_engine(empty_db_url)
    config = migrations.make_config(empty_db_url)
    command.upgrade(config, "0001_supabase_compat")
    with engine.connect() as connection:
        names = connection.execute(
            text(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'auth' ORDER BY 1"
            )
        ).scalars()
        assert list(names) == ["jwt", "role", "uid"]
        roles = dict(
            connection.execute(
                text(
                    "SELECT rolname, rolbypassrls FROM pg_roles "
                    "WHERE rolname IN ('anon', 'authenticated', 'service_role')"
                )
            ).all()
        )
        assert roles == {"anon": False, "authenticated": False, "service_role": True}
    command.downgrade(config, "base")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT to_regnamespace('auth')")).scalar() is None


@pytest.mark.parametrize(
    ("settings", "uid", "role"),
    [
        # What PostgREST sets today: the claims as one JSON setting.
        ({"request.jwt.claims": {"sub": "USER", "role": "authenticated"}}, "USER", "authenticated"),
        # Older PostgREST: one setting per claim.
        ({"request.jwt.claim.sub": "USER", "request.jwt.claim.role": "anon"}, "USER", "anon"),
        # No claims at all (a direct database connection).
        ({}, None, None),
    ],
)
def test_auth_functions_read_claims_like_supabase(
    conn: Connection, settings: dict[str, Any], uid: str | None, role: str | None
) -> None:
    user = uuid.uuid4()
    for name, value in settings.items():
        raw = json.dumps(value).replace("USER", str(user)) if isinstance(value, dict) else value
        conn.execute(
            text("SELECT set_config(:n, :v, true)"),
            {"n": name, "v": raw.replace("USER", str(user))},
        )
    got_uid, got_role = conn.execute(text("SELECT auth.uid(), auth.role()")).one()
    assert (str(got_uid) if got_uid else None) == (str(user) if uid else None)
    assert got_role == role
    if "request.jwt.claims" in settings:
        assert conn.execute(text("SELECT auth.jwt() ->> 'sub'")).scalar() == str(user)
