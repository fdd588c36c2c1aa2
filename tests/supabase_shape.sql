-- A Supabase-shaped database for the test suite (CRM_TEST_SUPABASE_SHAPE=1), written here from
-- what a Supabase project's database holds: its roles with their attributes and memberships,
-- a migrator that is not a superuser (Supabase's `postgres`; here crm_supabase_postgres, since
-- the test server's own superuser is called postgres), the default privileges in public, and
-- an `auth` schema owned by Supabase Auth's admin role with auth.users and auth.identities
-- shaped like Supabase Auth's and its auth.uid(), auth.role(), auth.jwt().
--
-- Part 1 (roles) is cluster-wide and idempotent: several test databases, and several test
-- sessions, share one server. Part 2 runs once in each new database (the template).

-- @cluster
DO $roles$
DECLARE
    spec record;
BEGIN
    FOR spec IN
        SELECT * FROM (VALUES
            ('anon', 'NOLOGIN NOINHERIT'),
            ('authenticated', 'NOLOGIN NOINHERIT'),
            ('service_role', 'NOLOGIN NOINHERIT BYPASSRLS'),
            ('authenticator', 'LOGIN NOINHERIT'),
            ('supabase_auth_admin', 'LOGIN NOINHERIT CREATEROLE'),
            ('supabase_storage_admin', 'LOGIN NOINHERIT CREATEROLE'),
            ('crm_supabase_postgres',
             'LOGIN INHERIT NOSUPERUSER CREATEROLE CREATEDB BYPASSRLS REPLICATION')
        ) AS r(name, attributes)
    LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I %s', spec.name, spec.attributes);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- made earlier, or by another session at the same moment
        END;
        IF spec.name NOT IN ('anon', 'authenticated', 'service_role') THEN
            EXECUTE format('ALTER ROLE %I %s', spec.name, spec.attributes);
        END IF;
    END LOOP;
END
$roles$;
GRANT anon, authenticated, service_role TO authenticator;
GRANT anon, authenticated, service_role TO crm_supabase_postgres;
-- As on Supabase (since 2022): so that postgres, no superuser, manages triggers on Auth's
-- tables and policies on Storage's.
GRANT supabase_auth_admin, supabase_storage_admin TO crm_supabase_postgres;

-- @database
-- The migrator creates in public, as Supabase's postgres does (and in the database: a
-- database's own grants are not copied from a template, so conftest grants that on each).
GRANT USAGE, CREATE ON SCHEMA public TO crm_supabase_postgres;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE crm_supabase_postgres IN SCHEMA public
    GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE crm_supabase_postgres IN SCHEMA public
    GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE crm_supabase_postgres IN SCHEMA public
    GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;

CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, crm_supabase_postgres;
SET ROLE supabase_auth_admin;

CREATE TABLE auth.users (
    instance_id uuid,
    id uuid NOT NULL PRIMARY KEY,
    aud varchar(255),
    role varchar(255),
    email varchar(255),
    encrypted_password varchar(255),
    email_confirmed_at timestamptz,
    invited_at timestamptz,
    confirmation_token varchar(255),
    confirmation_sent_at timestamptz,
    recovery_token varchar(255),
    recovery_sent_at timestamptz,
    email_change_token_new varchar(255),
    email_change varchar(255),
    email_change_sent_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb,
    raw_user_meta_data jsonb,
    is_super_admin boolean,
    created_at timestamptz,
    updated_at timestamptz,
    phone text UNIQUE DEFAULT NULL,
    phone_confirmed_at timestamptz,
    phone_change text DEFAULT '',
    phone_change_token varchar(255) DEFAULT '',
    phone_change_sent_at timestamptz,
    confirmed_at timestamptz GENERATED ALWAYS AS (LEAST(email_confirmed_at, phone_confirmed_at))
        STORED,
    email_change_token_current varchar(255) DEFAULT '',
    email_change_confirm_status smallint DEFAULT 0
        CHECK (email_change_confirm_status >= 0 AND email_change_confirm_status <= 2),
    banned_until timestamptz,
    reauthentication_token varchar(255) DEFAULT '',
    reauthentication_sent_at timestamptz,
    is_sso_user boolean NOT NULL DEFAULT false,
    deleted_at timestamptz,
    is_anonymous boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX users_email_partial_key ON auth.users (email) WHERE is_sso_user = false;
CREATE INDEX users_instance_id_idx ON auth.users (instance_id);

CREATE TABLE auth.identities (
    provider_id text NOT NULL,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    identity_data jsonb NOT NULL,
    provider text NOT NULL,
    last_sign_in_at timestamptz,
    created_at timestamptz,
    updated_at timestamptz,
    email text GENERATED ALWAYS AS (lower(identity_data ->> 'email')) STORED,
    id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    CONSTRAINT identities_provider_id_provider_unique UNIQUE (provider_id, provider)
);
CREATE INDEX identities_user_id_idx ON auth.identities (user_id);

-- As Supabase Auth defines them: no fixed search_path, claims from PostgREST's settings.
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
           )::uuid
$$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
           )::text
$$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                    nullif(current_setting('request.jwt.claims', true), ''))::jsonb
$$;
CREATE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim.email', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
           )::text
$$;
RESET ROLE;
