"""Supabase's database linter (its security and performance lints), re-expressed as SQL over
the catalogs so the tests can hold this schema to it on plain PostgreSQL.

Each query returns ``(object, detail)`` rows, one per finding. The conditions follow what each
lint checks in Supabase's linter; the SQL is this project's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class Finding:
    lint: str
    level: str
    object: str
    detail: str


EXPOSED = "n.nspname = ANY(:schemas)"
AUTH_CALLS = ("auth.uid()", "auth.jwt()", "auth.role()", "auth.email()", "current_setting(")

LINTS: dict[str, tuple[str, str]] = {
    # security
    "rls_disabled_in_public": (
        "ERROR",
        f"""
        SELECT n.nspname || '.' || c.relname, 'RLS is not enabled'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {EXPOSED} AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity""",
    ),
    "policy_exists_rls_disabled": (
        "ERROR",
        f"""
        SELECT DISTINCT n.nspname || '.' || c.relname, 'has policies but RLS is off'
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {EXPOSED} AND NOT c.relrowsecurity""",
    ),
    "rls_enabled_no_policy": (
        "INFO",
        f"""
        SELECT n.nspname || '.' || c.relname, 'RLS on, no policy: nothing is reachable'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {EXPOSED} AND c.relkind IN ('r', 'p') AND c.relrowsecurity
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)""",
    ),
    "function_search_path_mutable": (
        "WARN",
        """
        SELECT p.oid::regprocedure::text, 'no fixed search_path'
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(:function_schemas) AND p.prokind IN ('f', 'p')
          AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) AS cfg
                          WHERE cfg LIKE 'search\\_path=%')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid
                          AND d.deptype = 'e')""",
    ),
    "security_definer_view": (
        "ERROR",
        f"""
        SELECT n.nspname || '.' || c.relname, 'runs with its owner''s rights'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {EXPOSED} AND c.relkind = 'v'
          AND NOT coalesce('security_invoker=true' = ANY(c.reloptions)
                           OR 'security_invoker=on' = ANY(c.reloptions), false)""",
    ),
    "auth_users_exposed": (
        "ERROR",
        f"""
        SELECT DISTINCT n.nspname || '.' || c.relname, 'exposes auth.users to the API'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass
        JOIN pg_rewrite r ON r.oid = d.objid AND r.ev_class = c.oid
        WHERE {EXPOSED} AND c.relkind IN ('v', 'm')
          AND d.refobjid = to_regclass('auth.users')
          AND (has_table_privilege('anon', c.oid, 'SELECT')
               OR has_table_privilege('authenticated', c.oid, 'SELECT'))""",
    ),
    # performance
    "auth_rls_initplan": (
        "WARN",
        """
        SELECT schemaname || '.' || tablename || '.' || policyname,
               'calls ' || call || ' per row: wrap it as (select ...)'
        FROM pg_policies, unnest(CAST(:calls AS text[])) AS call,
             LATERAL (SELECT lower(regexp_replace(coalesce(qual, '') || ' '
                      || coalesce(with_check, ''), '\\s+', ' ', 'g')) AS expr) AS e
        WHERE schemaname = ANY(:schemas)
          AND (length(e.expr) - length(replace(e.expr, call, ''))) / length(call)
              > (length(e.expr) - length(replace(e.expr, '( select ' || call, '')))
                / length('( select ' || call)""",
    ),
    "multiple_permissive_policies": (
        "WARN",
        """
        WITH expanded AS (
            SELECT p.schemaname, p.tablename, p.policyname, r.role_name, a.action
            FROM pg_policies p
            CROSS JOIN LATERAL unnest(CASE WHEN p.roles = '{public}'
                THEN ARRAY['anon', 'authenticated', 'service_role']::name[]
                ELSE p.roles END) AS r(role_name)
            CROSS JOIN LATERAL unnest(CASE WHEN p.cmd = 'ALL'
                THEN ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] ELSE ARRAY[p.cmd] END)
                AS a(action)
            WHERE p.permissive = 'PERMISSIVE' AND p.schemaname = ANY(:schemas))
        SELECT schemaname || '.' || tablename,
               role_name || ' ' || action || ': ' || string_agg(policyname, ', ')
        FROM expanded GROUP BY schemaname, tablename, role_name, action
        HAVING count(*) > 1""",
    ),
    "unindexed_foreign_keys": (
        "INFO",
        f"""
        SELECT n.nspname || '.' || c.relname || '.' || k.conname, 'no index covers it'
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {EXPOSED} AND k.contype = 'f'
          AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = k.conrelid
                          AND (i.indkey::int2[])[0:cardinality(k.conkey) - 1] @> k.conkey
                          AND (i.indkey::int2[])[0:cardinality(k.conkey) - 1] <@ k.conkey)""",
    ),
    "duplicate_index": (
        "WARN",
        f"""
        SELECT n.nspname || '.' || c.relname, string_agg(ic.relname, ' = ' ORDER BY ic.relname)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {EXPOSED}
        GROUP BY n.nspname, c.relname, i.indrelid, i.indkey::text, i.indclass::text,
                 i.indcollation::text, coalesce(pg_get_expr(i.indexprs, i.indrelid), ''),
                 coalesce(pg_get_expr(i.indpred, i.indrelid), ''), ic.relam
        HAVING count(*) > 1""",
    ),
    "no_primary_key": (
        "INFO",
        f"""
        SELECT n.nspname || '.' || c.relname, 'no primary key'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {EXPOSED} AND c.relkind IN ('r', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                          WHERE k.conrelid = c.oid AND k.contype = 'p')""",
    ),
}


def run_lints(
    connection: Connection,
    schemas: Sequence[str] = ("public",),
    function_schemas: Sequence[str] = ("public", "auth"),
) -> list[Finding]:
    params = {
        "schemas": list(schemas),
        "function_schemas": list(function_schemas),
        "calls": list(AUTH_CALLS),
    }
    findings = []
    for lint, (level, sql) in LINTS.items():
        for obj, detail in connection.execute(text(sql), params):
            findings.append(Finding(lint, level, str(obj), str(detail)))
    return findings
