"""Supabase's database linter (its security and performance lints), re-expressed as SQL over
the catalogs so the tests can hold this schema to it on plain PostgreSQL.

Each query returns ``(object, detail)`` rows, one per finding. The conditions follow what each
lint checks in Supabase's linter, splinter: lints 0001 to 0029 as of commit 55db5b1
(2026-04-27), and the four added after it as their pull requests stood in September 2026
(rls_policy_null_auth_disjunct #169 at 245e308, invalid_index #179 at 11d5c62,
autovacuum_disabled #184 at 1af6467, unused_replication_slot #173 at fdefe94; three of them
are numbered 0030 there, so this module names lints by name). The SQL is this project's own,
and stricter where noted. The lints that cannot apply to a schema's own objects are left out;
docs/supabase.md lists them and says why.
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
# Schemas that belong to Supabase's services and extensions; the lints that look beyond the
# exposed schemas skip them.
NOT_SUPABASE = "n.nspname <> ALL(:supabase_schemas)"
SUPABASE_SCHEMAS = (
    "auth",
    "cron",
    "extensions",
    "graphql",
    "graphql_public",
    "information_schema",
    "net",
    "pg_catalog",
    "pgbouncer",
    "pgmq",
    "pgsodium",
    "pgsodium_masks",
    "pgtle",
    "realtime",
    "repack",
    "storage",
    "supabase_functions",
    "supabase_migrations",
    "vault",
)
# Column names the sensitive-columns lint treats as personal data or credentials.
SENSITIVE_NAMES = (
    # credentials
    "password", "passwd", "pwd", "passphrase", "secret", "secret_key", "private_key",
    "api_key", "apikey", "auth_key", "token", "jwt", "access_token", "refresh_token",
    "oauth_token", "session_token", "bearer_token", "auth_code", "session_id", "session_key",
    "session_secret", "recovery_code", "backup_code", "verification_code", "otp",
    "two_factor", "2fa_secret", "2fa_code", "pgp_key", "gpg_key", "ssh_key", "certificate",
    "license_key", "activation_key",
    # identity documents
    "ssn", "social_security", "social_security_number", "driver_license", "drivers_license",
    "license_number", "passport_number", "passport_id", "national_id", "tax_id",
    # money
    "credit_card", "card_number", "cvv", "cvc", "cvn", "bank_account", "account_number",
    "routing_number", "iban", "swift_code", "bic",
    # health, devices, biometrics
    "health_record", "medical_record", "patient_id", "insurance_number", "health_insurance",
    "medical_insurance", "treatment", "mac_address", "macaddr", "imei", "device_uuid",
    "facial_recognition",
)  # fmt: skip
# Readable by anon or authenticated: what PostgREST would serve.
API_READS = (
    "(has_table_privilege('anon', c.oid, 'SELECT') "
    "OR has_table_privilege('authenticated', c.oid, 'SELECT'))"
)
NOT_IN_EXTENSION = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')"
)


def _secdef_executable(role: str) -> tuple[str, str]:
    return (
        "WARN",
        f"""
        SELECT p.oid::regprocedure::text, 'SECURITY DEFINER, callable by {role} through /rpc'
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {EXPOSED} AND p.prosecdef
          AND has_function_privilege('{role}', p.oid, 'EXECUTE')""",
    )


def _graphql_exposed(role: str) -> tuple[str, str]:
    # Only where pg_graphql is installed (or assumed so): its introspection shows a relation
    # to every role that may select any of its columns, RLS or not. Partitioned parents are
    # not shown; their partitions are.
    return (
        "WARN",
        f"""
        SELECT n.nspname || '.' || c.relname, 'visible to {role} in the GraphQL schema'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {NOT_SUPABASE} AND n.nspname NOT LIKE 'pg\\_%'
          AND c.relkind IN ('r', 'v', 'm', 'f')
          AND (:graphql OR EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_graphql'))
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                      AND NOT a.attisdropped
                      AND has_column_privilege('{role}', c.oid, a.attnum, 'SELECT'))""",
    )


def _api_relkind(relkind: str, what: str) -> tuple[str, str]:
    return (
        "WARN",
        f"""
        SELECT n.nspname || '.' || c.relname, '{what} readable through the API, past RLS'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {EXPOSED} AND c.relkind = '{relkind}' AND {API_READS} AND {NOT_IN_EXTENSION}""",
    )


# The read policies whose USING clause is true whenever an auth call gives NULL: a top-level
# OR (or the whole clause) that is a NULL test of an expression calling auth.uid(), .jwt(),
# .role(), .email() or current_setting(..., true) (all NULL without a signed-in user's claims).
# The clause is taken apart by parenthesis depth in pg_get_expr's output, which parenthesises
# every operand: string literals are blanked first, the connectives at the outermost depth
# that has any decide (OR: each operand is a disjunct; AND: the clause is gated, and passes).
# The NULL test may be wrapped as (SELECT auth.uid()) or negated as NOT (... IS NOT NULL).
NULLABLE_AUTH = r"(auth\.(uid|jwt|role|email)\(\)|current_setting\([^()]*, true\))"
NULL_AUTH_DISJUNCT = rf"""
WITH pol AS (
    SELECT n.nspname || '.' || c.relname || '.' || p.polname AS obj,
           regexp_replace(regexp_replace(lower(pg_get_expr(p.polqual, p.polrelid)),
                                         '''([^'']|'''')*''', '''''', 'g'),
                          '\s+', ' ', 'g') AS e
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {NOT_SUPABASE} AND c.relkind IN ('r', 'p') AND c.relrowsecurity AND p.polpermissive
      AND p.polcmd IN ('r', '*') AND p.polqual IS NOT NULL
      AND (p.polroles = '{{0}}' OR 'anon'::regrole = ANY(p.polroles)
           OR 'authenticated'::regrole = ANY(p.polroles))),
chars AS (
    SELECT obj, t.pos, t.ch,
           sum(CASE t.ch WHEN '(' THEN 1 WHEN ')' THEN -1 ELSE 0 END)
               OVER (PARTITION BY obj ORDER BY t.pos) AS depth_after,
           CASE WHEN substr(e, t.pos::int, 4) = ' or ' THEN 'or'
                WHEN substr(e, t.pos::int, 5) = ' and ' THEN 'and' END AS connective
    FROM pol, regexp_split_to_table(pol.e, '') WITH ORDINALITY AS t(ch, pos)),
depths AS (
    SELECT *, depth_after - CASE ch WHEN '(' THEN 1 WHEN ')' THEN -1 ELSE 0 END AS depth_before
    FROM chars),
top AS (
    SELECT obj, coalesce(min(depth_after) FILTER (WHERE connective IS NOT NULL), 0) AS depth
    FROM depths GROUP BY obj),
cut AS (
    SELECT d.*, t.depth, d.connective IS NOT NULL AND d.depth_after = t.depth AS is_cut
    FROM depths d JOIN top t USING (obj)),
joined AS (
    SELECT *,
           count(*) FILTER (WHERE is_cut) OVER (PARTITION BY obj ORDER BY pos) AS operand_no,
           max(pos) FILTER (WHERE is_cut) OVER (PARTITION BY obj ORDER BY pos) AS last_cut,
           bool_or(is_cut AND connective = 'and') OVER (PARTITION BY obj) AS gated
    FROM cut),
operands AS (
    SELECT obj, trim(string_agg(ch, '' ORDER BY pos)) AS operand
    FROM joined
    WHERE NOT gated AND depth_before >= depth AND depth_after >= depth
      AND NOT coalesce(pos BETWEEN last_cut AND last_cut + 3, false)
    GROUP BY obj, operand_no)
SELECT obj, 'true for every row when auth is NULL: ' || operand
FROM operands
WHERE (operand ~ '^\((.*) is null\)$' OR operand ~ '^\(not \((.*) is not null\)\)$')
  AND operand ~ '{NULLABLE_AUTH}'"""

# A policy expression that lets every row through: the lint compares it with whitespace
# removed and lower-cased.
ALWAYS_TRUE = "('true', '(true)', '1=1', '(1=1)')"

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
          -- In schema auth only revision 0001's shim is this schema's (on Supabase, auth
          -- belongs to Supabase Auth, and splinter skips it).
          AND (n.nspname <> 'auth'
               OR obj_description(p.oid, 'pg_proc') = 'crm-schema:0001_supabase_compat')
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
    "anon_security_definer_function_executable": _secdef_executable("anon"),
    "authenticated_security_definer_function_executable": _secdef_executable("authenticated"),
    "pg_graphql_anon_table_exposed": _graphql_exposed("anon"),
    "pg_graphql_authenticated_table_exposed": _graphql_exposed("authenticated"),
    "materialized_view_in_api": _api_relkind("m", "materialized view"),
    "foreign_table_in_api": _api_relkind("f", "foreign table"),
    "rls_policy_always_true": (
        "WARN",
        rf"""
        SELECT n.nspname || '.' || c.relname || '.' || p.polname, 'lets every row through'
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace,
        LATERAL (SELECT CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                          WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS cmd,
                        p.polqual IS NULL AS no_using, p.polwithcheck IS NULL AS no_check,
                        regexp_replace(lower(coalesce(pg_get_expr(p.polqual, p.polrelid), '')),
                                       '\s', '', 'g') AS using_expr,
                        regexp_replace(lower(coalesce(pg_get_expr(p.polwithcheck, p.polrelid),
                                                      '')), '\s', '', 'g') AS check_expr) AS e
        WHERE {NOT_SUPABASE} AND c.relkind = 'r' AND c.relrowsecurity AND p.polpermissive
          AND (p.polroles = '{{0}}' OR 'anon'::regrole = ANY(p.polroles)
               OR 'authenticated'::regrole = ANY(p.polroles))
          AND ((e.cmd IN ('UPDATE', 'DELETE', 'ALL')
                AND (e.using_expr IN {ALWAYS_TRUE} OR e.no_using))
               OR e.check_expr IN {ALWAYS_TRUE}
               OR (e.no_check AND e.cmd = 'INSERT')
               OR (e.no_check AND e.cmd IN ('UPDATE', 'ALL')
                   AND e.using_expr IN {ALWAYS_TRUE}))""",
    ),
    "rls_policy_null_auth_disjunct": ("WARN", NULL_AUTH_DISJUNCT),
    "rls_references_user_metadata": (
        "ERROR",
        r"""
        SELECT schemaname || '.' || tablename || '.' || policyname,
               'trusts user_metadata, which every user may edit'
        FROM pg_policies
        WHERE schemaname <> ALL(:supabase_schemas)
          AND concat(qual, ' ', with_check)
              ~ '(auth\.jwt\(\)|current_setting\(.*request\.jwt\.claims).*user_metadata'""",
    ),
    "sensitive_columns_exposed": (
        "ERROR",
        f"""
        SELECT n.nspname || '.' || c.relname,
               'no RLS, readable through the API: '
               || string_agg(a.attname, ', ' ORDER BY a.attname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE {EXPOSED} AND c.relkind = 'r' AND NOT c.relrowsecurity AND {API_READS}
          AND replace(lower(a.attname), '-', '_') = ANY(:sensitive)
        GROUP BY n.nspname, c.relname""",
    ),
    "fkey_to_auth_unique": (
        "ERROR",
        """
        SELECT k.conrelid::regclass::text || '.' || k.conname,
               'references a unique key of ' || k.confrelid::regclass::text
               || ' that Supabase Auth may change'
        FROM pg_constraint k JOIN pg_class r ON r.oid = k.confrelid
        JOIN pg_index i ON i.indexrelid = k.conindid
        WHERE k.contype = 'f' AND r.relnamespace = 'auth'::regnamespace
          AND i.indisunique AND NOT i.indisprimary""",
    ),
    "extension_in_public": (
        "WARN",
        """
        SELECT e.extname, 'installed in schema public'
        FROM pg_extension e
        WHERE e.extnamespace = 'public'::regnamespace AND e.extname <> 'plpgsql'""",
    ),
    "unsupported_reg_types": (
        "WARN",
        """
        SELECT n.nspname || '.' || c.relname || '.' || a.attname,
               format_type(a.atttypid, NULL) || ' stops pg_upgrade'
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgsodium')
          AND a.atttypid IN ('regcollation'::regtype, 'regconfig'::regtype,
                             'regdictionary'::regtype, 'regnamespace'::regtype,
                             'regoper'::regtype, 'regoperator'::regtype, 'regproc'::regtype,
                             'regprocedure'::regtype)""",
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
    "invalid_index": (
        "WARN",
        # Stricter than splinter's: a partitioned table's index left invalid (made ON ONLY, a
        # partition's index never attached) is reported too.
        f"""
        SELECT n.nspname || '.' || c.relname || '.' || ic.relname, 'invalid: the planner skips it'
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {NOT_SUPABASE} AND n.nspname NOT LIKE 'pg\\_%' AND NOT i.indisvalid
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = ic.oid
                          AND d.deptype = 'e')""",
    ),
    "autovacuum_disabled": (
        "INFO",
        f"""
        SELECT n.nspname || '.' || c.relname, 'autovacuum turned off: ' || o.option
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             unnest(c.reloptions) AS o(option)
        WHERE {NOT_SUPABASE} AND n.nspname NOT LIKE 'pg\\_%' AND c.relkind IN ('r', 'm')
          AND lower(o.option) ~ '^autovacuum_enabled=(false|off|no|0|f|n)$'
          AND {NOT_IN_EXTENSION}""",
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
    *,
    graphql: bool = False,
) -> list[Finding]:
    """Every finding; ``graphql=True`` lints as if pg_graphql were installed."""
    params = {
        "schemas": list(schemas),
        "function_schemas": list(function_schemas),
        "calls": list(AUTH_CALLS),
        "supabase_schemas": list(SUPABASE_SCHEMAS),
        "sensitive": list(SENSITIVE_NAMES),
        "graphql": graphql,
    }
    findings = []
    for lint, (level, sql) in LINTS.items():
        for obj, detail in connection.execute(text(sql), params):
            findings.append(Finding(lint, level, str(obj), str(detail)))
    return findings
