"""The seed's *Migration Log Template*, filled in by ``crm-schema upgrade``.

Written as a text file (always) and as a row of ``public.migration_log`` (when the database
has reached revision ``0008_migration_log``).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text


@dataclass
class MigrationLogEntry:
    started_at: dt.datetime
    executed_by: str
    from_revision: str | None
    to_revision: str | None = None
    finished_at: dt.datetime | None = None
    verification_status: str = "NOT RUN"
    issues: list[str] = field(default_factory=list)
    rollback_required: bool = False
    notes: str = ""
    phases: list[dict[str, Any]] = field(default_factory=list)

    def as_text(self) -> str:
        def when(value: dt.datetime | None) -> str:
            return value.strftime("%H:%M:%S %Z") if value else "-"

        return "\n".join(
            [
                f"Migration Date: {self.started_at.date().isoformat()}",
                f"Migration Start Time: {when(self.started_at)}",
                f"Migration End Time: {when(self.finished_at)}",
                f"Executed By: {self.executed_by}",
                f"Verification Status: [{'X' if self.verification_status == 'PASS' else ' '}] "
                f"PASS [{'X' if self.verification_status == 'FAIL' else ' '}] FAIL"
                + (" (not run)" if self.verification_status == "NOT RUN" else ""),
                f"Issues Encountered: {'; '.join(self.issues) or 'none'}",
                f"Rollback Required: [{'X' if self.rollback_required else ' '}] YES "
                f"[{' ' if self.rollback_required else 'X'}] NO",
                f"Notes: {self.notes or '-'}",
                f"Revisions: {self.from_revision or 'base'} -> {self.to_revision or 'base'}",
                *(f"  {p['revision']:<36} {p['seconds']:.2f}s" for p in self.phases),
                "",
            ]
        )


def executed_by(connection: Connection) -> str:
    """The operating-system user and the database role, e.g. ``dba (as postgres)``."""
    role = connection.execute(text("SELECT current_user")).scalar_one()
    try:
        person = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        person = "unknown"
    return f"{person} (as {role})"


def write_file(entry: MigrationLogEntry, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"migration-{entry.started_at:%Y%m%d-%H%M%S}.txt"
    path.write_text(entry.as_text())
    return path


def write_row(connection: Connection, entry: MigrationLogEntry) -> bool:
    """Insert the entry into ``public.migration_log``; False when the table does not exist."""
    if connection.execute(text("SELECT to_regclass('public.migration_log')")).scalar() is None:
        return False
    connection.execute(
        text(
            "INSERT INTO public.migration_log (migration_date, started_at, finished_at, "
            "executed_by, from_revision, to_revision, verification_status, "
            "issues_encountered, rollback_required, notes, phases) VALUES (:date, :start, "
            ":end, :by, :from_rev, :to_rev, :status, :issues, :rollback, :notes, "
            "CAST(:phases AS jsonb))"
        ),
        {
            "date": entry.started_at.date(),
            "start": entry.started_at,
            "end": entry.finished_at,
            "by": entry.executed_by,
            "from_rev": entry.from_revision,
            "to_rev": entry.to_revision,
            "status": entry.verification_status,
            "issues": "; ".join(entry.issues) or None,
            "rollback": entry.rollback_required,
            "notes": entry.notes or None,
            "phases": json.dumps(entry.phases),
        },
    )
    connection.commit()
    return True
