"""The emergency rollback to the baseline, and what it would discard.

Rolling back drops every table and column the enhancement added: soft-delete marks (the rows
come back as live rows), permission overrides and non-default role permissions, the activity
and change logs, and the migration log. The CLI refuses unless told ``--yes`` when any of that
holds data users made, and says how much.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from crm_schema.runbook.baseline import CRM_TABLES
from crm_schema.runbook.report import Report

SEED_ROLLBACK_TABLES = """
SELECT COUNT(*) FROM information_schema.tables
WHERE table_schema = 'public'
AND table_name IN ('user_permissions', 'role_permissions', 'user_activity_log', 'change_log');
"""
SEED_ROLLBACK_COLUMNS = """
SELECT COUNT(*) FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = 'profiles'
AND column_name IN ('deleted_at', 'deleted_by', 'is_active', 'metadata');
"""
# The defaults revision 0007 installs carry ids derived from their content.
NON_DEFAULT_ROLE_PERMISSIONS = """
SELECT count(*) FROM public.role_permissions AS d
WHERE d.id <> md5('crm-schema:0007:' || d.role || ':' || d.permission || ':' || d.resource)::uuid
"""

# The change log records 0007's inserts of those defaults (by nobody: a migration has no
# auth.uid()); every other change-log row is a user's change.
USER_CHANGE_LOG_ROWS = """
SELECT count(*) FROM public.change_log AS c
WHERE NOT (
    c.table_name = 'role_permissions' AND c.operation = 'insert' AND c.changed_by IS NULL
    AND c.record_id = md5('crm-schema:0007:' || (c.new_values ->> 'role') || ':'
        || (c.new_values ->> 'permission') || ':' || (c.new_values ->> 'resource'))::uuid
)
"""


def _exists(connection: Connection, relation: str) -> bool:
    return (
        connection.execute(text("SELECT to_regclass(:r) IS NOT NULL"), {"r": relation}).scalar()
        is True
    )


def _has_column(connection: Connection, table: str, column: str) -> bool:
    return (
        connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
                "'public' AND table_name = :t AND column_name = :c)"
            ),
            {"t": table, "c": column},
        ).scalar()
        is True
    )


def discarded(connection: Connection) -> dict[str, int]:
    """Rows of data the rollback would discard, by kind (only kinds with rows)."""
    counts: dict[str, int] = {}
    for table in CRM_TABLES:
        if _has_column(connection, table, "deleted_at"):
            counts[f"soft-deleted {table}"] = connection.execute(
                text(f"SELECT count(*) FROM public.{table} WHERE deleted_at IS NOT NULL")
            ).scalar_one()
    # Only what users made counts: the migration log (the runbook's own record, written to
    # a file as well) and the rows revision 0007 wrote, with their change-log entries, would
    # come back with an upgrade.
    queries = {
        "user permission overrides": "SELECT count(*) FROM public.user_permissions",
        "non-default role permissions": NON_DEFAULT_ROLE_PERMISSIONS,
        "activity log rows": "SELECT count(*) FROM public.user_activity_log",
        "change log rows": USER_CHANGE_LOG_ROWS,
    }
    tables = {
        "user permission overrides": "public.user_permissions",
        "non-default role permissions": "public.role_permissions",
        "activity log rows": "public.user_activity_log",
        "change log rows": "public.change_log",
    }
    for kind, sql in queries.items():
        if _exists(connection, tables[kind]):
            counts[kind] = connection.execute(text(sql)).scalar_one()
    return {kind: n for kind, n in counts.items() if n}


def verify_rolled_back(connection: Connection) -> Report:
    """The seed's rollback verification, verbatim: both counts must be 0."""
    report = Report("Rollback verification")
    tables = connection.execute(text(SEED_ROLLBACK_TABLES)).scalar()
    report.add("seed: new tables removed", tables == 0, expected=0, actual=tables)
    columns = connection.execute(text(SEED_ROLLBACK_COLUMNS)).scalar()
    report.add("seed: new profile columns removed", columns == 0, expected=0, actual=columns)
    connection.rollback()
    return report
