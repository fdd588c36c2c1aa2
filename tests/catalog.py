"""Catalog snapshots: everything a downgrade must put back, as comparable plain data.

pytest-alembic does not see policies, grants, RLS flags or function bodies; these queries
do. Names and definitions are compared, never OIDs, so a dropped and re-created object
compares equal exactly when it is the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from tests.conftest import SUPABASE_SHAPE

USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
    "AND n.nspname NOT LIKE 'pg\\_temp%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp%'"
)
NOT_ALEMBIC = "c.relname NOT LIKE 'alembic\\_version%'"

QUERIES: dict[str, str] = {
    "schemas": f"""
        SELECT n.nspname, n.nspacl::text, obj_description(n.oid, 'pg_namespace')
        FROM pg_namespace n WHERE {USER_SCHEMAS} ORDER BY 1""",
    "relations": f"""
        SELECT n.nspname, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
               c.relacl::text, c.relispartition, pg_get_expr(c.relpartbound, c.oid),
               c.reloptions::text, obj_description(c.oid, 'pg_class')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMAS} AND {NOT_ALEMBIC} ORDER BY 1, 2""",
    "columns": f"""
        SELECT n.nspname, c.relname,
               row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, a.attacl::text,
               col_description(c.oid, a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE {USER_SCHEMAS} AND {NOT_ALEMBIC} AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        ORDER BY 1, 2, 3""",
    "constraints": f"""
        SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid),
               k.convalidated
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMAS} AND {NOT_ALEMBIC} ORDER BY 1, 2, 3""",
    "indexes": """
        SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
          AND tablename NOT LIKE 'alembic\\_version%' ORDER BY 1, 2, 3""",
    "policies": """
        SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check
        FROM pg_policies ORDER BY 1, 2, 3""",
    "functions": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_functiondef(p.oid), p.proacl::text, obj_description(p.oid, 'pg_proc')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {USER_SCHEMAS} ORDER BY 1, 2, 3""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY 1, 2""",
    "types": f"""
        SELECT n.nspname, t.typname, t.typtype,
               (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder)::text
                  FROM pg_enum e WHERE e.enumtypid = t.oid),
               t.typacl::text
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE {USER_SCHEMAS} AND t.typtype IN ('e', 'd', 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)
        ORDER BY 1, 2""",
    "views": """
        SELECT schemaname, viewname, definition FROM pg_views
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2""",
    "extensions": "SELECT extname, extversion FROM pg_extension ORDER BY 1",
    "default_privileges": """
        SELECT defaclrole::regrole::text, defaclnamespace, defaclobjtype, defaclacl::text
        FROM pg_default_acl ORDER BY 1, 2, 3""",
    "api_roles": """
        SELECT rolname, rolsuper, rolinherit, rolcanlogin, rolbypassrls FROM pg_roles
        WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY 1""",
}


def snapshot(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Everything in the catalogs a migration may create, alter or drop."""
    return {
        name: [tuple(row) for row in connection.execute(text(query))]
        for name, query in QUERIES.items()
    }


def diff(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> str:
    """A readable account of what differs, empty when the snapshots are equal."""
    lines: list[str] = []
    for name in QUERIES:
        gone = sorted(set(before[name]) - set(after[name]), key=repr)
        new = sorted(set(after[name]) - set(before[name]), key=repr)
        lines += [f"{name}: missing {row}" for row in gone]
        lines += [f"{name}: extra   {row}" for row in new]
    return "\n".join(lines)


def table_rows(connection: Connection) -> dict[str, list[str]]:
    """Every row of every ordinary table in public, as sorted JSON text."""
    tables = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND c.relname <> 'alembic_version' ORDER BY 1"
        )
    ).scalars()
    return {
        table: sorted(
            connection.execute(
                text(f'SELECT to_jsonb(t)::text FROM public."{table}" AS t')
            ).scalars()
        )
        for table in tables
    }


# What 0006's downgrade deliberately leaves revoked (README, "Row Level Security"): on a
# Supabase-shaped database the default privileges had granted it, so there a rolled-back
# database differs in exactly this. On plain PostgreSQL it was never granted.
UNRESTORED_TABLE_PRIVILEGES = "Dxt"  # TRUNCATE, REFERENCES, TRIGGER
API_ROLES = ("anon", "authenticated")


def _without_unrestored(acl: str | None, relkind: str) -> str | None:
    if acl is None or not SUPABASE_SHAPE:
        return acl
    kept = []
    for item in acl.strip("{}").split(","):
        grantee, _, rest = item.partition("=")
        if grantee in API_ROLES:
            if relkind == "S":
                continue  # every right on the identity sequences
            rights, _, grantor = rest.partition("/")
            rights = "".join(r for r in rights if r not in UNRESTORED_TABLE_PRIVILEGES)
            if not rights:
                continue
            item = f"{grantee}={rights}/{grantor}"
        kept.append(item)
    return "{" + ",".join(kept) + "}"


def _sorted_acl(acl: str | None) -> str | None:
    """An ACL's items in a fixed order: a revoked and re-granted right comes back last."""
    return acl if acl is None else "{" + ",".join(sorted(acl.strip("{}").split(","))) + "}"


def rollback_snapshot(connection: Connection) -> dict[str, Any]:
    """A snapshot to compare across a downgrade: without the grants a rollback deliberately
    does not give back (none on plain PostgreSQL), and with ACLs in a fixed order."""
    taken: dict[str, Any] = snapshot(connection)
    taken["relations"] = [
        (*row[:5], _without_unrestored(row[5], row[2]), *row[6:]) for row in taken["relations"]
    ]
    taken["functions"] = [(*row[:4], _sorted_acl(row[4]), *row[5:]) for row in taken["functions"]]
    return taken
