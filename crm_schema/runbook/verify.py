"""Post-migration verification: the seed's checks verbatim, then this project's invariants.

Everything runs in one transaction that is rolled back, so the seed's function test (which
logs a login) leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, text

from crm_schema import migrations
from crm_schema.runbook.baseline import CRM_TABLES
from crm_schema.runbook.preflight import DEFAULT_ADMIN_EMAIL, current_revision
from crm_schema.runbook.report import Report, Status

SEED_NEW_TABLES = """
SELECT COUNT(*) as new_tables_count FROM information_schema.tables
WHERE table_schema = 'public'
AND table_name IN ('user_permissions', 'role_permissions', 'user_activity_log', 'change_log');
"""
SEED_NEW_COLUMNS = """
SELECT COUNT(*) as new_columns_count FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = 'profiles'
AND column_name IN ('deleted_at', 'deleted_by', 'is_active', 'metadata', 'last_login_at', 'login_count');
"""  # noqa: E501 - the seed's query, verbatim
SEED_PERMISSION = """
SELECT public.user_has_permission(
    (SELECT id FROM public.profiles WHERE email = :admin_email),
    'read'::permission_type,
    'profile'::resource_type
);
"""
SEED_ACTIVITY = """
SELECT public.log_user_activity(
    (SELECT id FROM public.profiles WHERE email = :admin_email),
    'login'::activity_type,
    'system'::resource_type,
    NULL,
    '{"test": true}'::jsonb
);
"""
SEED_INDEX_USAGE = """
SELECT schemaname, tablename, attname, n_distinct, correlation
FROM pg_stats
WHERE schemaname = 'public'
AND tablename IN ('user_permissions', 'user_activity_log')
ORDER BY tablename, attname;
"""
SEED_PARTITIONS = """
SELECT schemaname, tablename FROM pg_tables
WHERE schemaname = 'public'
AND tablename LIKE 'user_activity_log_%';
"""
CHANGE_TRACKED = (*CRM_TABLES, "role_permissions", "user_permissions")


def _rows(connection: Connection, sql: str) -> list[str]:
    return [str(r) for r in connection.execute(text(sql)).scalars()]


def _admin_id(connection: Connection, admin_email: str) -> object:
    return connection.execute(
        text("SELECT id FROM public.profiles WHERE email = :e"), {"e": admin_email}
    ).scalar()


def _admin_check(report: Report, connection: Connection, admin_email: str, required: bool) -> None:
    name = f"seed: {admin_email} may read profiles"
    if not required and _admin_id(connection, admin_email) is None:
        # A fresh database has no users yet: that is healthy, not a failed migration.
        report.note(
            name,
            Status.SKIP,
            "no such user yet",
            "pass --admin-email to require an admin",
        )
        return
    allowed = connection.execute(text(SEED_PERMISSION), {"admin_email": admin_email}).scalar()
    report.add(
        name,
        allowed is True,
        expected=True,
        actual=allowed,
        detail="" if allowed else "is the admin's profile there?",
    )


def _seed_tables(report: Report, connection: Connection) -> None:
    tables = connection.execute(text(SEED_NEW_TABLES)).scalar()
    report.add("seed: new tables", tables == 4, expected=4, actual=tables)
    columns = connection.execute(text(SEED_NEW_COLUMNS)).scalar()
    report.add("seed: new profile columns", columns == 6, expected=6, actual=columns)


def _seed_functions(
    report: Report, connection: Connection, admin_email: str, admin_required: bool
) -> None:
    _admin_check(report, connection, admin_email, admin_required)
    log_id = connection.execute(text(SEED_ACTIVITY), {"admin_email": admin_email}).scalar()
    report.add(
        "seed: log_user_activity returns an id",
        log_id is not None,
        expected="a UUID",
        actual=log_id,
    )


def _seed_partitions(report: Report, connection: Connection) -> None:
    column_stats = [dict(r._mapping) for r in connection.execute(text(SEED_INDEX_USAGE))]
    report.note(
        "seed: index usage (pg_stats)",
        Status.INFO,
        f"{len(column_stats)} column(s) with statistics",
        "no expected value; ANALYZE fills it in",
    )
    report.tables["Index usage (seed query)"] = column_stats
    partitions = {row.tablename for row in connection.execute(text(SEED_PARTITIONS))}
    this_month = dt.datetime.now(dt.UTC).date().replace(day=1)
    wanted = [
        "user_activity_log_"
        + dt.date(
            this_month.year + (this_month.month - 1 + i) // 12,
            (this_month.month - 1 + i) % 12 + 1,
            1,
        ).strftime("%Y_%m")
        for i in range(12)
    ]
    missing = [w for w in wanted if w not in partitions]
    report.add(
        "seed: monthly partitions",
        not missing,
        expected="12 (this month and the next 11)",
        actual=f"{len(partitions)} present"
        + (f"; missing {', '.join(missing)}" if missing else ""),
    )


# Invariants that hold when a query finds nothing, from the revision that establishes them:
# (SINCE group, check name, what it lists, query).
MUST_FIND_NOTHING: tuple[tuple[str, str, str, str], ...] = (
    (
        "security",
        "RLS enabled on every table (partitions too)",
        "tables without",
        """SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity ORDER BY 1""",
    ),
    (
        "security",
        "every RLS table has a policy",
        "tables without",
        """SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind IN ('r', 'p') AND c.relrowsecurity
           AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) ORDER BY 1""",
    ),
    (
        "security",
        "functions have a fixed search_path",
        "functions without",
        """SELECT p.oid::regprocedure::text FROM pg_proc p
           WHERE p.pronamespace = 'public'::regnamespace
           AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%')
           ORDER BY 1""",
    ),
    (
        "security",
        "views are security_invoker",
        "views that are not",
        """SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind = 'v'
           AND NOT coalesce('security_invoker=true' = ANY(c.reloptions), false) ORDER BY 1""",
    ),
    (
        "security",
        "anon can reach no table or view",
        "reachable",
        """SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind IN ('r', 'p', 'v')
           AND has_table_privilege('anon', c.oid, 'SELECT,INSERT,UPDATE,DELETE') ORDER BY 1""",
    ),
)


def _invariants(report: Report, connection: Connection, reached: dict[str, bool]) -> None:
    for since, name, listing, sql in MUST_FIND_NOTHING:
        if reached[since]:
            found = _rows(connection, sql)
            report.add(name, not found, expected=f"no {listing}", actual=", ".join(found) or "none")
    if reached["functions"]:
        _change_log_triggers(report, connection)
    if reached["defaults"]:
        defaults = connection.execute(
            text("SELECT count(DISTINCT role) FROM role_permissions")
        ).scalar()
        report.add(
            "default role permissions",
            defaults == 3,
            expected="admin, manager, agent",
            actual=f"{defaults} role(s) with defaults",
        )


# Per tracked table: how many of its three change-tracking triggers fire in ordinary
# sessions, and the enabled BEFORE UPDATE row triggers that sort after <table>_track_edit.
# Triggers fire in name order, and track_edit logs the row as it stands when it runs: one
# after it could change the row or skip it, and the change log would not say what was
# written. (tgtype bits: row 1, before 2, update 16, instead 64.)
TRACKING_TRIGGERS = """
SELECT c.relname::text,
       count(t.oid) FILTER (
           WHERE t.tgname IN (c.relname || '_log_insert', c.relname || '_track_edit',
                              c.relname || '_log_delete')
             AND t.tgenabled IN ('O', 'A')),
       coalesce(string_agg(t.tgname::text, ', ' ORDER BY t.tgname) FILTER (
           WHERE t.tgtype & 83 = 19 AND t.tgenabled <> 'D'
             AND t.tgname > (c.relname || '_track_edit')::name), '')
  FROM pg_class AS c
  LEFT JOIN pg_trigger AS t ON t.tgrelid = c.oid AND NOT t.tgisinternal
 WHERE c.oid = ANY (CAST(:tables AS regclass[]))
 GROUP BY c.relname ORDER BY 1
"""


def _change_log_triggers(report: Report, connection: Connection) -> None:
    rows = connection.execute(
        text(TRACKING_TRIGGERS), {"tables": [f"public.{t}" for t in CHANGE_TRACKED]}
    ).all()
    untracked = [table for table, present, _ in rows if present != 3]
    report.add(
        "change-log triggers on every tracked table",
        not untracked,
        expected=f"{len(CHANGE_TRACKED)} tables",
        actual=", ".join(untracked) or f"{len(rows)} tables",
    )
    late = [f"{table}: {after}" for table, _, after in rows if after]
    report.add(
        "edit tracking is the last trigger before an update",
        not late,
        expected="no BEFORE UPDATE row trigger named after <table>_track_edit",
        actual="; ".join(late) or "none",
        detail="rename it to sort before <table>_track_edit" if late else "",
    )


# The revision that creates what each group of checks looks at: verify checks what the
# database's current revision should have, so an upgrade `--to` an earlier one can pass.
SINCE = {
    "tables": "0003_phase1_schema_structure",
    "partitions": "0004_phase2_indexes_constraints",
    "functions": "0005_phase3_functions_triggers",
    "security": "0006_phase4_security_policies",
    "defaults": "0007_phase5_default_data",
}


def run(connection: Connection, admin_email: str | None = None) -> Report:
    """Verify the database at its current revision.

    ``admin_email`` None means the seed's admin, checked only if that user exists (a fresh
    database has none); an e-mail given explicitly must belong to an admin.
    """
    report = Report("Verification")
    ids = migrations.revision_ids()
    try:
        revision = current_revision(connection)
        known = revision in ids
        report.add(
            "Alembic revision",
            known,
            expected="a revision of this package",
            actual=revision or "none",
            detail="" if revision == ids[-1] or not known else f"head is {ids[-1]}",
        )
        if revision is None or not known:
            return report
        # Names compare as text, so an unknown '0099_...' would pass a '>=' test: use indexes.
        reached = {group: ids.index(revision) >= ids.index(r) for group, r in SINCE.items()}
        email = admin_email or DEFAULT_ADMIN_EMAIL
        if reached["tables"]:
            _seed_tables(report, connection)
        if reached["functions"]:
            _seed_functions(report, connection, email, admin_required=admin_email is not None)
        if reached["partitions"]:
            _seed_partitions(report, connection)
        _invariants(report, connection, reached)
    finally:
        connection.rollback()
    return report
