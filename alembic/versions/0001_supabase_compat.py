"""Supabase compatibility shim: auth schema, auth functions, API roles (no-op on Supabase).

Revision ID: 0001_supabase_compat
Revises:
Create Date: 2026-11-24

On Supabase this revision changes nothing. On vanilla PostgreSQL it creates schema ``auth``,
a minimal ``auth.users``, ``auth.uid()`` / ``auth.role()`` / ``auth.jwt()`` (reading the
``request.jwt.claims`` setting the way PostgREST sets it) and the API roles ``anon``,
``authenticated`` and ``service_role`` (BYPASSRLS).

Every object it creates carries a comment naming this revision, and the downgrade removes
only objects carrying it, so the downgrade can never remove something Supabase owns. Roles
are cluster-wide: their comment also names the database that created them, and the
downgrade keeps a role (with a NOTICE) while anything in another database still uses it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_supabase_compat"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
DO $shim$
DECLARE
    marker constant text := 'crm-schema:0001_supabase_compat';
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = api_role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT%s', api_role,
                               CASE WHEN api_role = 'service_role' THEN ' BYPASSRLS' ELSE '' END);
                EXECUTE format('COMMENT ON ROLE %I IS %L', api_role,
                               marker || ':' || current_database());
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                -- A migration of another database in this cluster created it first.
                NULL;
            END;
        END IF;
    END LOOP;

    IF to_regnamespace('auth') IS NULL THEN
        CREATE SCHEMA auth;
        EXECUTE format('COMMENT ON SCHEMA auth IS %L', marker);
        GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
    END IF;

    IF to_regclass('auth.users') IS NULL THEN
        -- The columns this project and its tests use; Supabase's own table has more.
        CREATE TABLE auth.users (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            email text UNIQUE,
            raw_app_meta_data jsonb NOT NULL DEFAULT '{}'::jsonb,
            raw_user_meta_data jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        EXECUTE format('COMMENT ON TABLE auth.users IS %L', marker);
    END IF;

    -- The claims: PostgREST puts the verified JWT's claims, as JSON, in request.jwt.claims;
    -- older PostgREST versions set request.jwt.claim / request.jwt.claim.<name> instead.
    IF to_regprocedure('auth.jwt()') IS NULL THEN
        CREATE FUNCTION auth.jwt() RETURNS jsonb
            LANGUAGE sql STABLE
            SET search_path = ''
        AS $fn$
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')
            )::jsonb
        $fn$;
        EXECUTE format('COMMENT ON FUNCTION auth.jwt() IS %L', marker);
    END IF;

    IF to_regprocedure('auth.uid()') IS NULL THEN
        CREATE FUNCTION auth.uid() RETURNS uuid
            LANGUAGE sql STABLE
            SET search_path = ''
        AS $fn$
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
            )::uuid
        $fn$;
        EXECUTE format('COMMENT ON FUNCTION auth.uid() IS %L', marker);
    END IF;

    IF to_regprocedure('auth.role()') IS NULL THEN
        CREATE FUNCTION auth.role() RETURNS text
            LANGUAGE sql STABLE
            SET search_path = ''
        AS $fn$
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim.role', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
            )::text
        $fn$;
        EXECUTE format('COMMENT ON FUNCTION auth.role() IS %L', marker);
    END IF;
END
$shim$;
"""

DOWNGRADE = r"""
DO $shim$
DECLARE
    marker constant text := 'crm-schema:0001_supabase_compat';
    fn text;
    api_role text;
    role_oid oid;
BEGIN
    FOREACH fn IN ARRAY ARRAY['auth.role()', 'auth.uid()', 'auth.jwt()'] LOOP
        IF to_regprocedure(fn) IS NOT NULL
           AND obj_description(to_regprocedure(fn), 'pg_proc') = marker THEN
            EXECUTE 'DROP FUNCTION ' || fn;
        END IF;
    END LOOP;

    IF to_regclass('auth.users') IS NOT NULL
       AND obj_description(to_regclass('auth.users'), 'pg_class') = marker THEN
        DROP TABLE auth.users;
    END IF;

    -- No CASCADE: if something else was put in our schema, stop and say so.
    IF to_regnamespace('auth') IS NOT NULL
       AND obj_description(to_regnamespace('auth'), 'pg_namespace') = marker THEN
        DROP SCHEMA auth;
    END IF;

    FOREACH api_role IN ARRAY ARRAY['service_role', 'authenticated', 'anon'] LOOP
        SELECT oid INTO role_oid FROM pg_catalog.pg_roles WHERE rolname = api_role;
        CONTINUE WHEN role_oid IS NULL
            OR shobj_description(role_oid, 'pg_authid')
               IS DISTINCT FROM marker || ':' || current_database();
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_shdepend
                   WHERE refclassid = 'pg_catalog.pg_authid'::regclass AND refobjid = role_oid)
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members
                      WHERE roleid = role_oid OR member = role_oid) THEN
            RAISE NOTICE 'keeping role %: objects or roles in this cluster still use it', api_role;
        ELSE
            EXECUTE format('DROP ROLE %I', api_role);
        END IF;
    END LOOP;
END
$shim$;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
