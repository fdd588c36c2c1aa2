"""The production baseline (revision ``0002_crm_baseline``) column by column, and how a live
database differs from it.

Pre-flight compares a database with this before it is adopted with
``alembic stamp 0002_crm_baseline``; a test proves this spec matches what revision 0002
creates, so the two cannot drift apart.
"""

from __future__ import annotations

from alembic.config import Config
from sqlalchemy import Connection, text

from crm_schema.db import DatabaseError
from crm_schema.migrations import BASELINE_REVISION

TZ = "timestamp with time zone"
MONEY = "numeric(12,2)"

# table -> [(column, type as format_type() prints it, nullable)]
BASELINE_COLUMNS: dict[str, list[tuple[str, str, bool]]] = {
    "profiles": [
        ("id", "uuid", False),
        ("email", "text", False),
        ("full_name", "text", True),
        ("role", "user_role", False),
        ("phone", "text", True),
        ("territory", "text", True),
        ("created_at", TZ, False),
        ("updated_at", TZ, False),
    ],
    "dispensary_profiles": [
        ("id", "uuid", False),
        ("name", "text", False),
        ("dba_name", "text", True),
        ("license_number", "text", True),
        ("license_status", "license_status", False),
        ("license_expires_on", "date", True),
        ("status", "dispensary_status", False),
        ("contact_name", "text", True),
        ("phone", "text", True),
        ("email", "text", True),
        ("address_line1", "text", True),
        ("address_line2", "text", True),
        ("city", "text", True),
        ("county", "text", True),
        ("state", "text", False),
        ("postal_code", "text", True),
        ("assigned_agent_id", "uuid", True),
        ("notes", "text", True),
        ("created_at", TZ, False),
        ("updated_at", TZ, False),
    ],
    "products": [
        ("id", "uuid", False),
        ("name", "text", False),
        ("sku", "text", False),
        ("category", "product_category", False),
        ("strain_type", "strain_type", True),
        ("brand", "text", True),
        ("description", "text", True),
        ("thc_percent", "numeric(5,2)", True),
        ("cbd_percent", "numeric(5,2)", True),
        ("unit_size", "text", True),
        ("unit_price", MONEY, False),
        ("is_available", "boolean", False),
        ("created_at", TZ, False),
        ("updated_at", TZ, False),
    ],
    "orders": [
        ("id", "uuid", False),
        ("order_number", "bigint", False),
        ("dispensary_id", "uuid", False),
        ("agent_id", "uuid", True),
        ("status", "order_status", False),
        ("order_date", "date", False),
        ("requested_delivery_date", "date", True),
        ("delivered_at", TZ, True),
        ("total_amount", MONEY, False),
        ("notes", "text", True),
        ("created_at", TZ, False),
        ("updated_at", TZ, False),
    ],
    "order_items": [
        ("id", "uuid", False),
        ("order_id", "uuid", False),
        ("product_id", "uuid", False),
        ("quantity", "integer", False),
        ("unit_price", MONEY, False),
        ("created_at", TZ, False),
        ("updated_at", TZ, False),
    ],
    "communications": [
        ("id", "uuid", False),
        ("dispensary_id", "uuid", False),
        ("agent_id", "uuid", True),
        ("type", "communication_type", False),
        ("subject", "text", True),
        ("body", "text", True),
        ("occurred_at", TZ, False),
        ("follow_up_on", "date", True),
        ("created_at", TZ, False),
        ("updated_at", TZ, False),
    ],
    "tasks": [
        ("id", "uuid", False),
        ("title", "text", False),
        ("description", "text", True),
        ("assigned_to", "uuid", True),
        ("created_by", "uuid", True),
        ("dispensary_id", "uuid", True),
        ("status", "task_status", False),
        ("priority", "task_priority", False),
        ("due_date", "date", True),
        ("completed_at", TZ, True),
        ("created_at", TZ, False),
        ("updated_at", TZ, False),
    ],
}

# The CRM's seven tables: the baseline's, which phase 3 tracks (edits, soft delete, change log).
CRM_TABLES: tuple[str, ...] = tuple(BASELINE_COLUMNS)

UNSTAMPED_ADVICE = (
    "the CRM's baseline tables are here but Alembic has no record of them: check them "
    f"with `crm-schema preflight`, adopt them with `alembic stamp {BASELINE_REVISION}`, then "
    "upgrade; nothing was changed"
)


STAMPING = "crm_schema.stamping"  # set by migrations.stamp() in the Alembic config's attributes


def adopting_baseline(config: Config) -> bool:
    """True when Alembic runs only to record a revision: ``alembic stamp`` on the command line
    or :func:`crm_schema.migrations.stamp`. Stamping is how a baseline is adopted, so the
    refusal below must not stand in its way."""
    cmd: tuple[object, ...] = getattr(config.cmd_opts, "cmd", None) or ()
    from_cli = bool(cmd) and getattr(cmd[0], "__name__", "") == "stamp"
    return from_cli or bool(config.attributes.get(STAMPING))


class UnstampedBaselineError(DatabaseError):
    """Migrating would build the baseline again on top of the production tables."""


def refuse_unstamped_baseline(connection: Connection) -> None:
    """Refuse (:class:`UnstampedBaselineError`) baseline tables without an Alembic revision.

    Revision 0001 would commit, then 0002 would fail on the existing tables. Both
    ``crm-schema upgrade`` and ``alembic/env.py`` call this before anything is written. It
    reads only, then ends its transaction so the caller starts clean.
    """
    try:
        if connection.execute(text("SELECT to_regclass('public.alembic_version')")).scalar():
            return
        found = connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = 'public' "
                "AND tablename = ANY(:tables))"
            ),
            {"tables": list(CRM_TABLES)},
        ).scalar()
    finally:
        connection.rollback()
    if found:
        raise UnstampedBaselineError(UNSTAMPED_ADVICE)


LIVE_COLUMNS = text(
    """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
    FROM pg_catalog.pg_attribute AS a
    JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
      AND c.relname = ANY(:tables) AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY c.relname, a.attnum
    """
)


def live_columns(connection: Connection) -> dict[str, dict[str, tuple[str, bool]]]:
    found: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, type_, nullable in connection.execute(
        LIVE_COLUMNS, {"tables": list(BASELINE_COLUMNS)}
    ):
        found.setdefault(table, {})[column] = (type_, nullable)
    return found


def drift(
    connection: Connection, allow_extra: frozenset[str] = frozenset()
) -> dict[str, list[str]]:
    """Per baseline table, each way the live table differs from the baseline (empty: none).

    Columns named in ``allow_extra`` (those later revisions add) are not reported as extra.
    """
    live = live_columns(connection)
    report: dict[str, list[str]] = {}
    for table, columns in BASELINE_COLUMNS.items():
        problems: list[str] = []
        have = live.get(table)
        if have is None:
            report[table] = ["table is missing"]
            continue
        for column, type_, nullable in columns:
            if column not in have:
                problems.append(f"column {column} is missing")
                continue
            live_type, live_nullable = have[column]
            if live_type != type_:
                problems.append(f"{column} is {live_type}, expected {type_}")
            if live_nullable != nullable:
                problems.append(
                    f"{column} is {'NULL' if live_nullable else 'NOT NULL'}, "
                    f"expected {'NULL' if nullable else 'NOT NULL'}"
                )
        expected = {c for c, _, _ in columns} | allow_extra
        problems += [f"unexpected column {c}" for c in have if c not in expected]
        report[table] = problems
    return report
