"""Supabase's linter as the bar: the migrated schema raises no security or performance lint,
and each lint query is proven to fire on a deliberately bad object (so "no findings" means
something)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from tests.supabase_lints import LINTS, Finding, run_lints


def test_head_raises_no_lint(conn: Connection) -> None:
    assert run_lints(conn) == []


# Columns a policy's USING clause compares with = or IN, unqualified (its own table's), and
# whether an index leads with them.
POLICY_FILTER_COLUMNS = r"""
SELECT DISTINCT p.tablename, a.attname,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum)
  FROM pg_policies p
  JOIN pg_class c ON c.relname = p.tablename AND c.relnamespace = 'public'::regnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE p.schemaname = 'public' AND p.qual IS NOT NULL
   AND p.qual ~ ('(^|[^.a-z_])' || a.attname || '\s*(=|IN\s*\()')
"""


def test_the_columns_policies_filter_on_are_indexed(conn: Connection) -> None:
    found = {(t, c): indexed for t, c, indexed in conn.execute(text(POLICY_FILTER_COLUMNS))}
    # deleted_by appears only in the soft-delete branch (the deleter sees its row until the
    # transaction ends), which applies to rows already found by the other filters: an index
    # there would cost every write and serve no query.
    filtered = {key: indexed for key, indexed in found.items() if key[1] != "deleted_by"}
    assert {("orders", "agent_id"), ("tasks", "assigned_to"), ("user_permissions", "user_id")} <= (
        filtered.keys()
    )  # the rule finds what the policies filter on, so "all indexed" means something
    assert [key for key, indexed in filtered.items() if not indexed] == []


def test_the_auth_shim_functions_have_a_fixed_search_path(
    empty_db_url: URL, make_engine: object
) -> None:
    command.upgrade(migrations.make_config(empty_db_url), "0001_supabase_compat")
    with make_engine(empty_db_url).connect() as connection:  # type: ignore[operator]
        findings = run_lints(connection, function_schemas=("auth",))
    assert [f for f in findings if f.lint == "function_search_path_mutable"] == []


LOCKED_TABLE = (
    "CREATE TABLE public.lint_t (id int PRIMARY KEY{cols}); "
    "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
    "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true); "
)


def _function(schema: str, security: str, role: str) -> str:
    return (
        f"CREATE FUNCTION {schema}.lint_f() RETURNS int LANGUAGE sql {security} "
        f"SET search_path = '' AS 'SELECT 1'; "
        f"REVOKE EXECUTE ON FUNCTION {schema}.lint_f() FROM PUBLIC; "
        f"GRANT EXECUTE ON FUNCTION {schema}.lint_f() TO {role}"
    )


FOREIGN_SERVER = (
    "CREATE FOREIGN DATA WRAPPER lint_w; CREATE SERVER lint_s FOREIGN DATA WRAPPER lint_w; "
    "CREATE FOREIGN TABLE public.lint_f (x int) SERVER lint_s; "
    "REVOKE ALL ON public.lint_f FROM anon, authenticated"
)
# Supabase Auth's own unique keys (e-mail, phone) are not this schema's to reference.
AUTH_UNIQUE = "ALTER TABLE auth.users ADD CONSTRAINT lint_u UNIQUE (id, created_at); "
JWT_POLICY = (
    "CREATE POLICY lint_p ON public.orders AS RESTRICTIVE FOR SELECT TO authenticated "
    "USING (((SELECT auth.jwt()) -> '{key}' ->> 'team') = 'a')"
)

# lint -> (SQL creating a bad object, SQL creating its good twin)
CASES: dict[str, tuple[str, str]] = {
    "anon_security_definer_function_executable": (
        _function("public", "SECURITY DEFINER", "anon"),
        _function("public", "SECURITY INVOKER", "anon"),
    ),
    "authenticated_security_definer_function_executable": (
        _function("public", "SECURITY DEFINER", "authenticated"),
        _function("private", "SECURITY DEFINER", "authenticated"),
    ),
    "pg_graphql_anon_table_exposed": (
        "CREATE VIEW public.lint_v WITH (security_invoker = true) AS SELECT 1 AS x; "
        "GRANT SELECT ON public.lint_v TO anon",
        "CREATE VIEW public.lint_v WITH (security_invoker = true) AS SELECT 1 AS x; "
        "REVOKE ALL ON public.lint_v FROM anon, authenticated",
    ),
    "pg_graphql_authenticated_table_exposed": (
        LOCKED_TABLE.format(cols="") + "GRANT SELECT (id) ON public.lint_t TO authenticated",
        LOCKED_TABLE.format(cols="") + "REVOKE ALL ON public.lint_t FROM anon, authenticated",
    ),
    "materialized_view_in_api": (
        "CREATE MATERIALIZED VIEW public.lint_m AS SELECT 1 AS x; "
        "REVOKE ALL ON public.lint_m FROM anon; GRANT SELECT ON public.lint_m TO authenticated",
        "CREATE MATERIALIZED VIEW public.lint_m AS SELECT 1 AS x; "
        "REVOKE ALL ON public.lint_m FROM anon, authenticated",
    ),
    "foreign_table_in_api": (
        FOREIGN_SERVER + "; GRANT SELECT ON public.lint_f TO anon",
        FOREIGN_SERVER,
    ),
    "rls_policy_always_true": (
        LOCKED_TABLE.format(cols="") + "CREATE POLICY w ON public.lint_t FOR DELETE "
        "TO authenticated USING (true)",
        LOCKED_TABLE.format(cols="") + "CREATE POLICY w ON public.lint_t FOR DELETE "
        "TO authenticated USING (id = 1)",
    ),
    "rls_references_user_metadata": (
        JWT_POLICY.format(key="user_metadata"),
        JWT_POLICY.format(key="app_metadata"),
    ),
    "sensitive_columns_exposed": (
        "CREATE TABLE public.lint_t (id int PRIMARY KEY, api_key text); "
        "GRANT SELECT ON public.lint_t TO authenticated",
        LOCKED_TABLE.format(cols=", api_key text")
        + "GRANT SELECT ON public.lint_t TO authenticated",
    ),
    "fkey_to_auth_unique": (
        AUTH_UNIQUE
        + LOCKED_TABLE.format(
            cols=", u uuid, t timestamptz, "
            "FOREIGN KEY (u, t) REFERENCES auth.users (id, created_at)"
        )
        + "CREATE INDEX ON public.lint_t (u, t)",
        AUTH_UNIQUE
        + LOCKED_TABLE.format(cols=", u uuid REFERENCES auth.users (id)")
        + "CREATE INDEX ON public.lint_t (u)",
    ),
    "extension_in_public": (
        "CREATE EXTENSION seg SCHEMA public",
        "CREATE SCHEMA lint_ext; CREATE EXTENSION seg SCHEMA lint_ext",
    ),
    "unsupported_reg_types": (
        LOCKED_TABLE.format(cols=", f regproc"),
        LOCKED_TABLE.format(cols=", f regclass"),
    ),
    "rls_disabled_in_public": (
        "CREATE TABLE public.lint_t (id int PRIMARY KEY)",
        "CREATE TABLE public.lint_t (id int PRIMARY KEY); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true)",
    ),
    "policy_exists_rls_disabled": (
        "CREATE TABLE public.lint_t (id int PRIMARY KEY); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true); "
        "ALTER TABLE public.lint_t DISABLE ROW LEVEL SECURITY",
        "CREATE TABLE public.lint_t (id int PRIMARY KEY); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true)",
    ),
    "rls_enabled_no_policy": (
        "CREATE TABLE public.lint_t (id int PRIMARY KEY); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY",
        "CREATE TABLE public.lint_t (id int PRIMARY KEY); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true)",
    ),
    "function_search_path_mutable": (
        "CREATE FUNCTION public.lint_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION public.lint_f() RETURNS int LANGUAGE sql SET search_path = '' "
        "AS 'SELECT 1'",
    ),
    "security_definer_view": (
        "CREATE VIEW public.lint_v AS SELECT id FROM public.products",
        "CREATE VIEW public.lint_v WITH (security_invoker = true) "
        "AS SELECT id FROM public.products",
    ),
    "auth_users_exposed": (
        "CREATE VIEW public.lint_v WITH (security_invoker = true) AS SELECT id FROM auth.users; "
        "GRANT SELECT ON public.lint_v TO authenticated",
        "CREATE VIEW public.lint_v WITH (security_invoker = true) AS SELECT id FROM auth.users",
    ),
    "auth_rls_initplan": (
        "CREATE POLICY lint_p ON public.orders AS RESTRICTIVE FOR SELECT TO authenticated "
        "USING (agent_id = auth.uid())",
        "CREATE POLICY lint_p ON public.orders AS RESTRICTIVE FOR SELECT TO authenticated "
        "USING (agent_id = (SELECT auth.uid()))",
    ),
    "multiple_permissive_policies": (
        "CREATE POLICY lint_p ON public.orders FOR SELECT TO authenticated USING (true)",
        "CREATE POLICY lint_p ON public.orders AS RESTRICTIVE FOR SELECT TO authenticated "
        "USING (true)",
    ),
    "unindexed_foreign_keys": (
        "CREATE TABLE public.lint_t (id int PRIMARY KEY, o uuid REFERENCES public.orders); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true)",
        "CREATE TABLE public.lint_t (id int PRIMARY KEY, o uuid REFERENCES public.orders); "
        "CREATE INDEX ON public.lint_t (o); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true)",
    ),
    "duplicate_index": (
        "CREATE INDEX lint_i ON public.orders (agent_id)",
        "CREATE INDEX lint_i ON public.orders (agent_id, status)",
    ),
    "no_primary_key": (
        "CREATE TABLE public.lint_t (id int); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true)",
        "CREATE TABLE public.lint_t (id int PRIMARY KEY); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING (true)",
    ),
}


def _new_findings(conn: Connection, sql: str, graphql: bool = False) -> set[str]:
    conn.execute(text("SAVEPOINT lint"))
    before = set(run_lints(conn, graphql=graphql))
    conn.execute(text(sql))
    added: set[Finding] = set(run_lints(conn, graphql=graphql)) - before
    conn.execute(text("ROLLBACK TO SAVEPOINT lint"))
    return {f.lint for f in added}


def test_every_lint_has_a_case() -> None:
    assert set(CASES) == set(LINTS)


@pytest.mark.parametrize("lint", sorted(CASES))
def test_lint_fires_on_the_bad_object_only(conn: Connection, lint: str) -> None:
    bad, good = CASES[lint]
    if (
        lint == "extension_in_public"
        and not conn.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'seg'")
        ).scalar()
    ):
        pytest.skip("the contrib extension seg is not installed on this server")
    # A table with policies but RLS off is, of course, also a table without RLS.
    also = (
        {"rls_disabled_in_public"}
        if lint in ("policy_exists_rls_disabled", "sensitive_columns_exposed")
        else set()
    )
    graphql = lint.startswith("pg_graphql")
    assert _new_findings(conn, bad, graphql) == {lint} | also
    assert _new_findings(conn, good, graphql) == set()


def test_with_pg_graphql_only_what_signed_in_users_read_is_visible(conn: Connection) -> None:
    """With pg_graphql installed, every relation a signed-in user may read is in its GraphQL
    schema: that is what an API is, and the one WARN left (docs/supabase.md). anon sees
    none, and nothing else is raised."""
    findings = run_lints(conn, graphql=True)
    assert {f.lint for f in findings} == {"pg_graphql_authenticated_table_exposed"}
    readable = conn.execute(
        text(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('public', 'private', 'activity_archive') "
            "AND c.relkind IN ('r', 'v') AND has_table_privilege('authenticated', c.oid, 'SELECT')"
        )
    ).scalars()
    assert {f.object for f in findings} == set(readable)
