"""Activity-log partition maintenance: create months ahead, archive old months, schedule both."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, text

from crm_schema.runbook.report import Report, Status

UNITS = {"d": "days", "w": "weeks", "m": "months", "y": "years"}
LIST_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'public.user_activity_log'::regclass ORDER BY 1
"""


def parse_age(value: str) -> str:
    """'90d', '12w', '3m', '1y' or any PostgreSQL interval text, as interval text."""
    match = re.fullmatch(r"\s*(\d+)\s*([dwmy])\s*", value)
    return f"{match[1]} {UNITS[match[2]]}" if match else value


def ensure(connection: Connection, months_ahead: int) -> Report:
    report = Report(f"Partitions: this month and the next {months_ahead}")
    before = set(connection.execute(text(LIST_PARTITIONS)).scalars())
    created = connection.execute(
        text("SELECT public.ensure_activity_log_partitions(:n)"), {"n": months_ahead}
    ).scalar_one()
    after = list(connection.execute(text(LIST_PARTITIONS)).scalars())
    connection.commit()
    report.note("partitions created", Status.PASS, created)
    report.tables["Created"] = [{"partition": p} for p in after if p not in before]
    return report


def archive(connection: Connection, older_than: str, drop: bool) -> Report:
    interval = parse_age(older_than)
    report = Report(f"Partitions older than {interval}: {'drop' if drop else 'archive'}")
    rows: list[dict[str, Any]] = [
        dict(r._mapping)
        for r in connection.execute(
            text("SELECT * FROM public.archive_activity_log_partitions(CAST(:i AS interval), :d)"),
            {"i": interval, "d": drop},
        )
    ]
    connection.commit()
    report.note("partitions " + ("dropped" if drop else "archived"), Status.PASS, len(rows))
    report.tables["Partitions"] = rows
    return report


SCHEDULE_SQL = """\
-- Run both monthly with pg_cron (where the extension is installed, e.g. on Supabase):
SELECT cron.schedule('crm-activity-partitions-ensure', '0 3 1 * *',
    $$SELECT public.ensure_activity_log_partitions(11)$$);
SELECT cron.schedule('crm-activity-partitions-archive', '30 3 1 * *',
    $$SELECT * FROM public.archive_activity_log_partitions(interval '90 days')$$);
"""


def pg_cron_installed(connection: Connection) -> bool:
    return (
        connection.execute(
            text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')")
        ).scalar()
        is True
    )
