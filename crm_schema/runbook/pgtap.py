"""A pgTAP test of the access model for ``supabase test db``, run on the user's own project.

It checks the facts the app's safety rests on, as the database enforces them, inside one
transaction that is rolled back: Row Level Security on every table in ``public``; ``anon``
reads no row and may write nothing; an agent (signed up inside the test: the sign-up trigger
makes its profile) sees only the dispensaries assigned to it; no SECURITY DEFINER function
is in a schema the API exposes, nor may ``anon`` use the schema that holds them; and no API
role may read an activity-log partition or archived month directly (past the log's RLS).
"""

from __future__ import annotations

TEST_FILE = "crm_schema_test.sql"

# A throwaway agent and two dispensaries, made and rolled back inside the test.
AGENT = "c0de0000-0000-4000-8000-00000000a9e7"
ASSIGNED = "c0de0000-0000-4000-8000-0000000d15a1"
OTHER = "c0de0000-0000-4000-8000-0000000d15a2"

# What PostgREST serves on Supabase by default (and pg_graphql's schema).
EXPOSED_SCHEMAS = "'public', 'graphql_public'"
# An extension's own objects (pgTAP's, if installed in public) are the extension's business.
NOT_EXTENSIONS = (
    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS e WHERE e.classid = {catalog}::regclass "
    "AND e.objid = {oid} AND e.deptype = 'e')"
)
RELATION_NOT_EXTENSIONS = NOT_EXTENSIONS.format(catalog="'pg_class'", oid="c.oid")
FUNCTION_NOT_EXTENSIONS = NOT_EXTENSIONS.format(catalog="'pg_proc'", oid="p.oid")

TEST_SQL = f"""\
-- crm-schema's access model, checked on this database (written by `crm-schema sql --supabase`).
-- Run with `supabase test db`. Everything happens in one transaction that is rolled back.
BEGIN;
SELECT plan(9);

SELECT is_empty(
    $$SELECT c.oid::regclass::text FROM pg_catalog.pg_class AS c
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
         AND NOT c.relrowsecurity AND {RELATION_NOT_EXTENSIONS}$$,
    'Row Level Security is on for every table in public'
);

SELECT is_empty(
    $$SELECT c.oid::regclass::text || ': ' || p.privilege
        FROM pg_catalog.pg_class AS c,
             unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(privilege)
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
         AND has_table_privilege('anon', c.oid, p.privilege) AND {RELATION_NOT_EXTENSIONS}$$,
    'anon may write no table or view in public'
);

SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc AS p
       WHERE p.prosecdef AND p.pronamespace::regnamespace::text IN ({EXPOSED_SCHEMAS})
         AND {FUNCTION_NOT_EXTENSIONS}$$,
    'no SECURITY DEFINER function is in a schema the API exposes'
);

SELECT is_empty(
    $$SELECT c.oid::regclass::text || ': ' || r.role
        FROM pg_catalog.pg_class AS c,
             unnest(ARRAY['anon', 'authenticated']) AS r(role)
       WHERE (c.relispartition AND EXISTS (
                  SELECT 1 FROM pg_catalog.pg_inherits AS i
                   WHERE i.inhrelid = c.oid
                     AND i.inhparent = 'public.user_activity_log'::regclass)
              OR c.relnamespace = 'activity_archive'::regnamespace)
         AND has_any_column_privilege(r.role, c.oid, 'SELECT')$$,
    'no API role may read an activity-log partition or archived month directly'
);

SELECT ok(
    NOT has_schema_privilege('anon', 'private', 'USAGE'),
    'anon may not use schema private, where the privileged functions are'
);

-- A new agent: Supabase Auth's sign-up inserts the user, the trigger makes its profile.
INSERT INTO auth.users (id, email, raw_user_meta_data)
VALUES ('{AGENT}', 'crm-schema-pgtap-agent@example.invalid', '{{"full_name": "pgTAP agent"}}');
SELECT is(
    (SELECT role::text FROM public.profiles WHERE id = '{AGENT}'),
    'agent',
    'signing up makes an agent profile'
);
INSERT INTO public.dispensary_profiles (id, name, assigned_agent_id)
VALUES ('{ASSIGNED}', 'pgTAP assigned dispensary', '{AGENT}'),
       ('{OTHER}', 'pgTAP other dispensary', NULL);

SET LOCAL ROLE anon;
SELECT set_config('request.jwt.claims', '{{"role": "anon"}}', true);
SELECT is_empty(
    $$SELECT c.oid::regclass::text FROM pg_catalog.pg_class AS c
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
         AND has_table_privilege(c.oid, 'SELECT') AND {RELATION_NOT_EXTENSIONS}
         AND (xpath('/row/n/text()', query_to_xml(
                 format('SELECT count(*) AS n FROM %s', c.oid::regclass), false, true, '')
             ))[1]::text::bigint > 0$$,
    'anon sees no row of any table or view in public'
);

RESET ROLE;
SET LOCAL ROLE authenticated;
SELECT set_config('request.jwt.claims',
                  '{{"sub": "{AGENT}", "role": "authenticated"}}', true);
SELECT results_eq(
    $$SELECT id FROM public.dispensary_profiles$$,
    $$VALUES ('{ASSIGNED}'::uuid)$$,
    'an agent sees only the dispensaries assigned to it'
);
UPDATE public.dispensary_profiles SET name = 'taken over' WHERE id = '{OTHER}';
RESET ROLE;
SELECT is(
    (SELECT name FROM public.dispensary_profiles WHERE id = '{OTHER}'),
    'pgTAP other dispensary',
    'an agent cannot change a dispensary not assigned to it'
);

SELECT * FROM finish();
ROLLBACK;
"""
