"""Monitoring: the seed's queries verbatim, plus permission counts and audit-table sizes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from crm_schema import migrations
from crm_schema.runbook.report import Report, Status

SEED_ACTIVITY_SIZE = """
SELECT
    schemaname, tablename,
    pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) as size
FROM pg_tables
WHERE tablename LIKE 'user_activity_log%'
ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC;
"""
SEED_CHANGE_COUNTS = """
SELECT table_name, COUNT(*) as change_count,
       MIN(changed_at) as oldest_change, MAX(changed_at) as newest_change
FROM public.change_log
GROUP BY table_name
ORDER BY change_count DESC;
"""
PERMISSIONS = """
SELECT 'role default' AS kind, role::text AS who, count(*) AS rows
  FROM public.role_permissions GROUP BY role
UNION ALL
SELECT 'user override', CASE WHEN expires_at <= now() THEN 'expired'
                             WHEN granted THEN 'allow' ELSE 'deny' END, count(*)
  FROM public.user_permissions GROUP BY 2
ORDER BY 1, 2;
"""
AUDIT_SIZES = """
SELECT n.nspname || '.' || c.relname AS relation,
       CASE WHEN c.relkind = 'p' THEN 'partitioned' ELSE 'table' END AS kind,
       pg_size_pretty(CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)
                    FROM pg_inherits i WHERE i.inhparent = c.oid)
            ELSE pg_total_relation_size(c.oid) END) AS size,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)
                    FROM pg_inherits i WHERE i.inhparent = c.oid)
            ELSE pg_total_relation_size(c.oid) END AS bytes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE (n.nspname = 'public' AND c.relname IN ('change_log', 'user_activity_log', 'migration_log'))
    OR (n.nspname = 'activity_archive' AND c.relkind = 'r')
 ORDER BY bytes DESC;
"""


def _table(connection: Connection, sql: str) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(text(sql))]


def run(connection: Connection) -> Report:
    report = Report("Monitoring")
    try:
        report.tables["Activity log size per partition"] = _table(connection, SEED_ACTIVITY_SIZE)
        report.tables["Changes per table"] = _table(connection, SEED_CHANGE_COUNTS)
        report.tables["Permissions"] = _table(connection, PERMISSIONS)
        sizes = _table(connection, AUDIT_SIZES)
        report.tables["Largest audit tables"] = [
            {k: v for k, v in row.items() if k != "bytes"} for row in sizes
        ]
    finally:
        connection.rollback()
    return report


# --- the yearly permission review ----------------------------------------------------------

DEFAULTS_REVISION = "0007_phase5_default_data"
OVERRIDES = """
SELECT coalesce(u.email, p.user_id::text) AS user, p.permission::text AS permission,
       p.resource::text AS resource, CASE WHEN p.granted THEN 'granted' ELSE 'denied' END
           AS effect,
       coalesce(g.email, p.granted_by::text, '(unknown)') AS granted_by,
       p.created_at::date AS granted_on, coalesce(p.expires_at::text, 'never') AS expires,
       CASE WHEN p.expires_at <= now() THEN 'expired' ELSE 'active' END AS state,
       coalesce(p.reason, '') AS reason
  FROM public.user_permissions AS p
  LEFT JOIN public.profiles AS u ON u.id = p.user_id
  LEFT JOIN public.profiles AS g ON g.id = p.granted_by
 ORDER BY 1, 3, 2
"""
# The defaults the migration created, as rows (role, permission, resource).
MIGRATION_DEFAULTS = """
SELECT * FROM unnest(CAST(:roles AS text[]), CAST(:permissions AS text[]),
                     CAST(:resources AS text[])) AS d (role, permission, resource)
"""
ADDED = f"""
SELECT r.role::text AS role, r.permission::text AS permission, r.resource::text AS resource,
       coalesce(c.email, r.created_by::text, '(migration or database owner)') AS added_by,
       r.created_at::date AS added_on
  FROM public.role_permissions AS r
  LEFT JOIN public.profiles AS c ON c.id = r.created_by
 WHERE (r.role::text, r.permission::text, r.resource::text) NOT IN ({MIGRATION_DEFAULTS})
 ORDER BY 1, 3, 2
"""
REMOVED = f"""
SELECT d.role, d.permission, d.resource FROM ({MIGRATION_DEFAULTS}) AS d
 WHERE (d.role, d.permission, d.resource) NOT IN
       (SELECT role::text, permission::text, resource::text FROM public.role_permissions)
 ORDER BY 1, 3, 2
"""


def migration_defaults() -> list[tuple[str, str, str]]:
    """The role defaults revision 0007 installs, read from the revision itself (the one
    source of what "the migration created" means)."""
    script = migrations.script_directory().get_revision(DEFAULTS_REVISION)
    assert script is not None
    return [(str(r), str(p), str(s)) for r, p, s in script.module.DEFAULTS]


def permission_review(connection: Connection) -> Report:
    """The seed's yearly task: every override with who granted it and when it expires, and
    the role defaults that differ from the migration's (added, removed)."""
    defaults = migration_defaults()
    params = {
        "roles": [d[0] for d in defaults],
        "permissions": [d[1] for d in defaults],
        "resources": [d[2] for d in defaults],
    }
    report = Report("Permission review")
    try:
        overrides = _table(connection, OVERRIDES)
        added = [dict(r._mapping) for r in connection.execute(text(ADDED), params)]
        removed = [dict(r._mapping) for r in connection.execute(text(REMOVED), params)]
    finally:
        connection.rollback()
    expired = sum(1 for o in overrides if o["state"] == "expired")
    never = sum(1 for o in overrides if o["expires"] == "never" and o["state"] == "active")
    report.note("user overrides", Status.INFO, len(overrides), f"{never} never expire")
    report.note(
        "expired overrides",
        Status.WARN if expired else Status.PASS,
        expired,
        "no longer apply: remove them" if expired else "",
    )
    report.note(
        "role defaults differing from the migration's",
        Status.INFO,
        f"{len(added)} added, {len(removed)} removed",
    )
    report.tables["User overrides"] = overrides
    report.tables["Role defaults added since the migration"] = added
    report.tables["Role defaults removed since the migration"] = removed
    return report
