"""Pre-flight: is this database ready to migrate? Read-only.

Follows the seed's pre-migration checklist: the server is reachable and new enough, the
seed's extension and table queries, the baseline matches column by column, the admin user
exists, the current Alembic revision, and a backup reminder.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from crm_schema import migrations, transactions
from crm_schema.db import MIN_SERVER_VERSION_NUM
from crm_schema.runbook.baseline import BASELINE_COLUMNS, drift
from crm_schema.runbook.report import Report, Status

DEFAULT_ADMIN_EMAIL = "stokes@cakeoklahoma.com"

SEED_EXTENSIONS = """
SELECT * FROM pg_available_extensions
WHERE name IN ('uuid-ossp', 'pg_stat_statements');
"""
SEED_TABLES = """
SELECT table_name FROM information_schema.tables
WHERE table_schema = 'public'
AND table_name IN ('profiles', 'dispensary_profiles', 'products', 'communications', 'tasks', 'orders', 'order_items');
"""  # noqa: E501 - the seed's query, verbatim

# Columns later revisions add to the baseline tables: present once the database is past 0002.
LATER_COLUMNS = frozenset(
    {
        "version",
        "edit_count",
        "updated_by",
        "deleted_at",
        "deleted_by",
        "metadata",
        "is_active",
        "last_login_at",
        "login_count",
    }
)


def current_revision(connection: Connection) -> str | None:
    if connection.execute(text("SELECT to_regclass('public.alembic_version')")).scalar() is None:
        return None
    return connection.execute(text("SELECT version_num FROM public.alembic_version")).scalar()


def _revision(report: Report, revision: str | None) -> bool:
    """Record the revision; False when it is one this package does not know."""
    known = migrations.revision_ids()
    if revision is None:
        report.note("Alembic revision", Status.INFO, "none (not managed by Alembic yet)")
        return True
    ok = revision in known
    report.add(
        "Alembic revision",
        ok,
        expected="one of this package's revisions",
        actual=revision,
        detail="" if ok else "unknown revision: a newer crm-schema?",
    )
    return ok


def _half_applied(report: Report, connection: Connection) -> None:
    """A run stopped inside 0004's non-transactional part left some of it in place."""
    partial = transactions.half_applied_text(connection)
    report.add(
        "no revision half applied",
        partial is None,
        expected="none",
        actual=partial or "none",
        detail="" if partial is None else transactions.NEXT_STEP,
    )


def _baseline(report: Report, connection: Connection, revision: str | None) -> None:
    found = set(connection.execute(text(SEED_TABLES)).scalars())
    report.add(
        "baseline tables (seed query)",
        len(found) in (0, 7),
        expected="7 of 7",
        actual=f"{len(found)} of 7",
    )
    if not found:
        others = connection.execute(
            text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ).scalar_one()
        report.add(
            "empty or CRM database",
            others == 0,
            expected="no other tables",
            actual=f"{others} other table(s) in public",
            detail="not the CRM baseline: refusing to guess"
            if others
            else "empty: crm-schema upgrade creates everything",
        )
        return
    past_baseline = revision is not None and revision > migrations.BASELINE_REVISION
    for table, problems in drift(
        connection, LATER_COLUMNS if past_baseline else frozenset()
    ).items():
        report.add(
            f"baseline: {table}",
            not problems,
            expected="matches 0002_crm_baseline",
            actual="; ".join(problems) or f"{len(BASELINE_COLUMNS[table])} columns match",
        )
    if revision is None and len(found) == 7:
        report.notes.append(
            "Next step: adopt the existing baseline with `alembic stamp 0002_crm_baseline` "
            "(after the checks above pass), then `crm-schema upgrade`."
        )


def _admin(report: Report, connection: Connection, email: str) -> None:
    if connection.execute(text("SELECT to_regclass('public.profiles')")).scalar() is None:
        report.note(
            f"admin user {email}",
            Status.INFO,
            "no profiles table yet",
            "create the admin after migrating",
        )
        return
    role = connection.execute(
        text("SELECT role::text FROM public.profiles WHERE email = :e"), {"e": email}
    ).scalar()
    report.add(
        f"admin user {email}",
        role == "admin",
        expected="exists with role admin",
        actual="missing" if role is None else f"role {role}",
    )


def run(connection: Connection, admin_email: str, backup_confirmed: bool) -> Report:
    """All pre-flight checks, inside a READ ONLY transaction that is rolled back."""
    report = Report("Pre-flight checks")
    connection.execute(text("SET TRANSACTION READ ONLY"))
    try:
        version_num = int(connection.execute(text("SHOW server_version_num")).scalar_one())
        shown = connection.execute(text("SHOW server_version")).scalar_one()
        report.add(
            "PostgreSQL version",
            version_num >= MIN_SERVER_VERSION_NUM,
            expected=">= 15",
            actual=shown,
        )
        extensions = [row.name for row in connection.execute(text(SEED_EXTENSIONS))]
        report.note(
            "extensions available (seed query)",
            Status.INFO,
            ", ".join(sorted(extensions)) or "none",
            "neither is required: the schema uses built-in gen_random_uuid()",
        )
        revision = current_revision(connection)
        if _revision(report, revision):
            _half_applied(report, connection)
            _baseline(report, connection, revision)
        _admin(report, connection, admin_email)
        if backup_confirmed:
            report.note("backup", Status.PASS, "confirmed by --backup-confirmed")
        else:
            report.note(
                "backup",
                Status.WARN,
                "not confirmed",
                "take or verify a backup, then pass --backup-confirmed",
            )
    finally:
        connection.rollback()
    return report
