"""Monitoring: the seed's queries verbatim, plus permission counts and audit-table sizes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from crm_schema.runbook.report import Report

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
