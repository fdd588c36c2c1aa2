"""Supabase's linter as the bar: the migrated schema raises no security or performance lint,
and each lint query is proven to fire on a deliberately bad object (so "no findings" means
something). With pg_graphql installed, the one WARN left is lint 0027 on exactly the
relations the access model lets signed-in users read (crm_schema.advisor names them)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from crm_schema import advisor, migrations
from tests.supabase_lints import LINTS, SUPABASE_SCHEMAS, Finding, run_lints


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
        f"REVOKE EXECUTE ON FUNCTION {schema}.lint_f() FROM PUBLIC, anon, authenticated; "
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

OWNED_TABLE = (
    "CREATE TABLE public.lint_t (id int PRIMARY KEY, owner uuid); "
    "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
    "CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING ({using})"
)
# Outside the API schema, so that only the storage and index lints apply.
PARTITIONED = (
    "CREATE SCHEMA lint_s; "
    "CREATE TABLE lint_s.t (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d); "
    "CREATE TABLE lint_s.t1 PARTITION OF lint_s.t "
    "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'); "
    "CREATE INDEX lint_i ON ONLY lint_s.t (d)"
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
        "REVOKE ALL ON public.lint_v FROM anon, authenticated; "
        "GRANT SELECT ON public.lint_v TO anon",
        "CREATE VIEW public.lint_v WITH (security_invoker = true) AS SELECT 1 AS x; "
        "REVOKE ALL ON public.lint_v FROM anon, authenticated",
    ),
    "pg_graphql_authenticated_table_exposed": (
        LOCKED_TABLE.format(cols="") + "REVOKE ALL ON public.lint_t FROM anon, authenticated; "
        "GRANT SELECT (id) ON public.lint_t TO authenticated",
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
    "rls_policy_null_auth_disjunct": (
        OWNED_TABLE.format(using="(SELECT auth.uid()) IS NULL OR owner = (SELECT auth.uid())"),
        OWNED_TABLE.format(using="(SELECT auth.uid()) IS NOT NULL AND owner = (SELECT auth.uid())"),
    ),
    "invalid_index": (
        PARTITIONED,
        PARTITIONED + "; CREATE INDEX lint_i1 ON lint_s.t1 (d); "
        "ALTER INDEX lint_s.lint_i ATTACH PARTITION lint_s.lint_i1",
    ),
    "autovacuum_disabled": (
        "CREATE SCHEMA lint_s; "
        "CREATE TABLE lint_s.t (id int PRIMARY KEY) WITH (autovacuum_enabled = off)",
        "CREATE SCHEMA lint_s; "
        "CREATE TABLE lint_s.t (id int PRIMARY KEY) WITH (autovacuum_enabled = on)",
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
        "CREATE VIEW public.lint_v WITH (security_invoker = true) AS SELECT id FROM auth.users; "
        "REVOKE ALL ON public.lint_v FROM anon, authenticated",
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
    if (
        lint == "foreign_table_in_api"
        and not conn.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar()
    ):
        pytest.skip("only a superuser creates a foreign-data wrapper (not Supabase's postgres)")
    # A table with policies but RLS off is, of course, also a table without RLS.
    also = (
        {"rls_disabled_in_public"}
        if lint in ("policy_exists_rls_disabled", "sensitive_columns_exposed")
        else set()
    )
    graphql = lint.startswith("pg_graphql")
    assert _new_findings(conn, bad, graphql) == {lint} | also
    assert _new_findings(conn, good, graphql) == set()


# A read policy's USING clause -> whether it is true for every row when auth gives NULL.
NULL_AUTH_FORMS = {
    "auth.uid() IS NULL OR owner = (SELECT auth.uid())": True,
    "NOT ((SELECT auth.uid()) IS NOT NULL) OR owner = (SELECT auth.uid())": True,
    "owner = (SELECT auth.uid()) OR ((SELECT auth.jwt()) ->> 'sub') IS NULL": True,
    "current_setting('request.jwt.claims', true) IS NULL OR owner = (SELECT auth.uid())": True,
    "(SELECT auth.role()) IS NULL": True,
    "note = 'x or (y' OR (SELECT auth.uid()) IS NULL": True,
    "owner = (SELECT auth.uid()) AND ((SELECT auth.uid()) IS NULL OR note = 'shared')": False,
    "deleted_at IS NULL OR owner = (SELECT auth.uid())": False,
    "current_setting('app.tenant') IS NULL OR owner = (SELECT auth.uid())": False,
    "ordered_by = (SELECT auth.uid()) OR note = 'shared'": False,
}


@pytest.mark.parametrize("using", sorted(NULL_AUTH_FORMS))
def test_a_read_policy_true_when_auth_is_null_is_found_in_any_form(
    conn: Connection, using: str
) -> None:
    sql = (
        "CREATE TABLE public.lint_t (id int PRIMARY KEY, owner uuid, ordered_by uuid, "
        "note text, deleted_at timestamptz); "
        "ALTER TABLE public.lint_t ENABLE ROW LEVEL SECURITY; "
        f"CREATE POLICY p ON public.lint_t FOR SELECT TO authenticated USING ({using})"
    )
    # (The bare auth.uid() of splinter's own example is also an initplan finding.)
    found = _new_findings(conn, sql) - {"auth_rls_initplan"}
    assert found == ({"rls_policy_null_auth_disjunct"} if NULL_AUTH_FORMS[using] else set())


def test_an_index_left_by_a_failed_concurrent_build_is_found(engine: Engine) -> None:
    """What the lint is for: CREATE UNIQUE INDEX CONCURRENTLY meets a duplicate and leaves
    its index behind, invalid, kept up on every write and used by no query."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            text("CREATE SCHEMA lint_s; CREATE TABLE lint_s.t (id int PRIMARY KEY, code int)")
        )
        connection.execute(text("INSERT INTO lint_s.t VALUES (1, 7), (2, 7)"))
        with pytest.raises(DBAPIError, match="could not create unique index"):
            connection.execute(text("CREATE UNIQUE INDEX CONCURRENTLY lint_u ON lint_s.t (code)"))
        found = [f.object for f in run_lints(connection) if f.lint == "invalid_index"]
        assert found == ["lint_s.t.lint_u"]
        connection.execute(text("DROP INDEX lint_s.lint_u"))
        assert [f for f in run_lints(connection) if f.lint == "invalid_index"] == []


# Every relation outside Supabase's own schemas that ``role`` may select any column of (what
# pg_graphql would show it, and what PostgREST would serve where the schema is exposed).
READABLE = r"""
SELECT n.nspname || '.' || c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname <> ALL(:supabase) AND n.nspname NOT LIKE 'pg\_%'
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
               AND NOT a.attisdropped AND has_column_privilege(:role, c.oid, a.attnum, 'SELECT'))
"""


def _readable(conn: Connection, role: str) -> set[str]:
    rows = conn.execute(text(READABLE), {"supabase": list(SUPABASE_SCHEMAS), "role": role})
    return set(rows.scalars())


def _maintain_partitions(conn: Connection) -> None:
    """What the partition maintenance makes after the migration, under default privileges that
    grant every new table in public to the API roles (Supabase's) and to PUBLIC: months ahead,
    an old month archived to activity_archive, the catch-all."""
    conn.execute(
        text(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            "GRANT ALL ON TABLES TO PUBLIC, anon, authenticated, service_role"
        )
    )
    conn.execute(text("SELECT public.ensure_activity_log_partitions(2, '2040-01-01')"))
    conn.execute(text("SELECT public.ensure_activity_log_partitions(0, '2020-01-01')"))
    archived = conn.execute(
        text("SELECT partition_name FROM public.archive_activity_log_partitions()")
    ).scalars()
    assert list(archived) == ["user_activity_log_2020_01"]


def test_signed_in_users_read_exactly_what_the_access_model_gives_them(conn: Connection) -> None:
    """The relations `authenticated` may select are the ones the access model gives some
    signed-in user read on, not one more: no partition (made by the migration or later), no
    archived month, nothing in private. `anon` may select nothing."""
    _maintain_partitions(conn)
    assert _readable(conn, "authenticated") == {f"public.{r}" for r in advisor.signed_in_reads()}
    assert _readable(conn, "anon") == set()
    assert advisor.anon_reads() == ()


def test_with_pg_graphql_the_warnings_are_exactly_the_intended_ones(conn: Connection) -> None:
    """With pg_graphql installed, lint 0027 reports each relation a signed-in user reads; they
    are intended, and crm_schema.advisor names them by the advisor's cache keys. Any other
    ERROR or WARN, or a 0027 finding not among them, is a new exposure."""
    _maintain_partitions(conn)

    def raised() -> set[str]:
        return {
            advisor.cache_key(f.lint, *f.object.split(".", 1))
            if f.lint.startswith("pg_graphql")
            else f"{f.lint} {f.object}"
            for f in run_lints(conn, graphql=True)
            if f.level in ("ERROR", "WARN")
        }

    assert raised() == set(advisor.intended_findings())
    # A partition is the kind of relation that would slip through (it is not in the model).
    conn.execute(text("GRANT SELECT ON public.user_activity_overflow TO authenticated"))
    assert raised() - set(advisor.intended_findings()) == {
        "pg_graphql_authenticated_table_exposed_public_user_activity_overflow"
    }


def test_the_intended_findings_are_the_model_s_relations_pg_graphql_shows() -> None:
    keys = advisor.intended_findings()
    assert "pg_graphql_authenticated_table_exposed_public_orders" in keys
    assert "pg_graphql_authenticated_table_exposed_public_record_change_history" in keys
    # The partitioned log is not shown by pg_graphql (its partitions are granted to no one).
    assert not any(key.endswith("_user_activity_log") for key in keys)
    assert len(keys) == len(advisor.signed_in_reads()) - 1
    assert advisor.allowlist_text().splitlines()[-len(keys) :] == list(keys)
