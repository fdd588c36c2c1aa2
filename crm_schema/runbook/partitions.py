"""Activity-log partition maintenance: create months ahead, archive old months (into schema
``activity_archive``, or out of the database into verified files), restore them, schedule."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from crm_schema import __version__
from crm_schema.db import first_line
from crm_schema.runbook.archive_files import (
    CHUNK,
    ArchiveFileError,
    GzipWriter,
    Manifest,
    data_path,
    manifest_path,
    quoted,
    sha256_of,
    verify,
)
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


# The monthly partitions (never the catch-all user_activity_overflow) with their bounds.
MONTHS = r"""
SELECT c.relname AS partition, b.range_from, b.range_to
  FROM pg_catalog.pg_inherits AS i
  JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
 CROSS JOIN LATERAL (
    SELECT (regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                         'FROM \(''([^'']+)''\)'))[1]::timestamptz AS range_from,
           (regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                         'TO \(''([^'']+)''\)'))[1]::timestamptz AS range_to
 ) AS b
 WHERE i.inhparent = 'public.user_activity_log'::regclass
   AND c.relname ~ '^user_activity_log_[0-9]{4}_[0-9]{2}$'
   AND b.range_to <= now() - CAST(:older_than AS interval)
 ORDER BY 1
"""
COLUMNS = """
SELECT attname FROM pg_catalog.pg_attribute
 WHERE attrelid = 'public.user_activity_log'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum
"""
MONTH_NAME = re.compile(r"user_activity_log_(\d{4})_(\d{2})")


class LeftInPlaceError(Exception):
    """A month that was not archived (or restored); the message says why."""


def _table(partition: str) -> str:
    # Names come from the catalog and match MONTH_NAME: safe to quote this simply.
    if not MONTH_NAME.fullmatch(partition):
        raise ValueError(f"not an activity-log month: {partition!r}")
    return f'public."{partition}"'


def _lock_timeout(connection: Connection) -> None:
    """A live database: wait seconds, not minutes, for a lock (``CRM_LOCK_TIMEOUT``)."""
    connection.execute(
        text("SELECT set_config('lock_timeout', :t, true)"),
        {"t": os.environ.get("CRM_LOCK_TIMEOUT", "5s")},
    )
    # The same lock the partition functions take: one maintainer at a time.
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('public.user_activity_log'))"))


def _psycopg(connection: Connection) -> psycopg.Connection[Any]:
    raw = connection.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):  # pragma: no cover - the engine pins psycopg
        raise TypeError("COPY needs a psycopg 3 connection")
    return raw


def _revision(connection: Connection) -> str:
    return str(connection.execute(text("SELECT version_num FROM public.alembic_version")).scalar())


def _old_months(connection: Connection, interval: str) -> list[Any]:
    rows = list(connection.execute(text(MONTHS), {"older_than": interval}))
    connection.rollback()
    return rows


def _count(connection: Connection, partition: str) -> int:
    return int(connection.execute(text(f"SELECT count(*) FROM {_table(partition)}")).scalar_one())


def _verified_export(directory: Path, partition: str, rows: int) -> Manifest | None:
    """An earlier run's export of this month, if it is complete and still holds every row."""
    if not manifest_path(directory, partition).is_file():
        return None
    try:
        manifest = Manifest.read(manifest_path(directory, partition))
        verify(manifest, directory)
    except ArchiveFileError:
        return None  # damaged or partial: export again
    return manifest if manifest.row_count == rows else None


def _export(connection: Connection, month: Any, directory: Path) -> Manifest:
    """COPY the month to a gzip file in one snapshot, read it back, then write the manifest."""
    table = _table(month.partition)
    connection.rollback()
    connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    count, first, last = connection.execute(
        text(f"SELECT count(*), min(created_at), max(created_at) FROM {table}")
    ).one()
    columns = list(connection.execute(text(COLUMNS)).scalars())
    revision = _revision(connection)
    path = data_path(directory, month.partition)
    writer = GzipWriter(path)
    try:
        with (
            _psycopg(connection).cursor() as cursor,
            cursor.copy(
                f"COPY (SELECT {quoted(columns)} FROM {table} ORDER BY created_at, id) "
                "TO STDOUT WITH (FORMAT csv, HEADER true)"
            ) as copy,
        ):
            for chunk in copy:
                writer.write(chunk)
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    finally:
        connection.rollback()
    manifest = Manifest(
        partition=month.partition,
        month="-".join(MONTH_NAME.fullmatch(month.partition).groups()),  # type: ignore[union-attr]
        range_from=month.range_from.isoformat(),
        range_to=month.range_to.isoformat(),
        row_count=int(count),
        first_created_at=first.isoformat() if first else None,
        last_created_at=last.isoformat() if last else None,
        columns=columns,
        file=path.name,
        sha256=sha256_of(path),
        package_version=__version__,
        revision=revision,
        exported_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    verify(manifest, directory)  # read back: the count and the checksum
    manifest.write(manifest_path(directory, month.partition))
    return manifest


def _drop(connection: Connection, partition: str, expected_rows: int) -> None:
    """Detach and drop in one short-locking transaction; rows that arrived since the export
    (late events dated in that month) roll it all back, so nothing is lost."""
    connection.rollback()
    with connection.begin():
        _lock_timeout(connection)
        connection.execute(
            text(f"ALTER TABLE public.user_activity_log DETACH PARTITION {_table(partition)}")
        )
        if (now := _count(connection, partition)) != expected_rows:
            raise LeftInPlaceError(
                f"{now - expected_rows:+d} rows since the export: run the archive again"
            )
        connection.execute(text(f"DROP TABLE {_table(partition)}"))


def _archive_month(connection: Connection, month: Any, directory: Path, dry_run: bool) -> str:
    rows = _count(connection, month.partition)
    connection.rollback()
    done = _verified_export(directory, month.partition, rows)
    if dry_run:
        first = "exported and verified already" if done else f"would export {rows} rows"
        return f"{first}; would detach and drop"
    if done is None:
        done = _export(connection, month, directory)
        first = f"exported {done.row_count} rows, verified"
    else:
        first = "exported and verified already"
    _drop(connection, month.partition, done.row_count)
    return f"{first}; detached and dropped"


def archive_to_files(
    connection: Connection,
    older_than: str,
    directory: Path | None,
    dry_run: bool,
    drop: bool = False,
) -> Report:
    """Per month that ended before ``now() - older_than``: export, verify, only then drop.
    A month that fails at any step stays in place, with one line saying why."""
    interval = parse_age(older_than)
    target = f"files in {directory}" if directory else "schema activity_archive"
    report = Report(
        f"Partitions older than {interval}: archive to {target}" + (" (dry run)" if dry_run else "")
    )
    if directory is not None and not dry_run:
        directory.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for month in _old_months(connection, interval):
        if directory is None:  # --dry-run without --export
            action = "would drop" if drop else "would detach into activity_archive"
        else:
            try:
                action = _archive_month(connection, month, directory, dry_run)
            except (DBAPIError, OSError, ArchiveFileError, LeftInPlaceError) as exc:
                connection.rollback()
                why = first_line(exc) if isinstance(exc, DBAPIError) else str(exc)
                report.add(month.partition, False, actual="left in place", detail=why)
                continue
        report.note(month.partition, Status.INFO if dry_run else Status.PASS, action)
        rows.append({"partition": month.partition, "action": action})
    report.tables["Partitions"] = rows
    return report


def restore(connection: Connection, manifest_file: Path) -> Report:
    """Load an exported month back: check manifest and checksum, recreate the month's
    partition if needed, COPY the rows in; rows already present are never written twice."""
    report = Report(f"Restore from {manifest_file}")
    try:
        manifest = Manifest.read(manifest_file)
        path = verify(manifest, manifest_file.parent)
    except ArchiveFileError as exc:
        report.add("manifest and checksum", False, actual=str(exc))
        return report
    report.add("manifest and checksum", True, actual=f"{manifest.row_count} rows, sha256 ok")
    columns = quoted(manifest.columns)
    connection.rollback()
    try:
        with connection.begin():
            _lock_timeout(connection)
            missing = set(manifest.columns) - set(connection.execute(text(COLUMNS)).scalars())
            if missing:
                raise LeftInPlaceError(f"column(s) {', '.join(sorted(missing))} no longer exist")
            created = connection.execute(
                text("SELECT public.ensure_activity_log_partitions(0, CAST(:m AS date))"),
                {"m": f"{manifest.month}-01"},
            ).scalar_one()
            connection.execute(
                text(
                    "CREATE TEMPORARY TABLE crm_restore_rows "
                    "(LIKE public.user_activity_log) ON COMMIT DROP"
                )
            )
            with (
                gzip.open(path, "rb") as source,
                _psycopg(connection).cursor() as cursor,
                cursor.copy(
                    f"COPY pg_temp.crm_restore_rows ({columns}) FROM STDIN "
                    "WITH (FORMAT csv, HEADER MATCH)"
                ) as copy,
            ):
                while chunk := source.read(CHUNK):
                    copy.write(chunk)
            outside = connection.execute(
                text(
                    "SELECT count(*) FROM pg_temp.crm_restore_rows WHERE NOT (created_at >= "
                    "CAST(:low AS timestamptz) AND created_at < CAST(:high AS timestamptz))"
                ),
                {"low": manifest.range_from, "high": manifest.range_to},
            ).scalar_one()
            if outside:
                raise LeftInPlaceError(
                    f"{outside} row(s) in the file are not from {manifest.month}"
                )
            written = connection.execute(
                text(
                    f"INSERT INTO public.user_activity_log ({columns}) "
                    f"SELECT {columns} FROM pg_temp.crm_restore_rows "
                    "ON CONFLICT (id, created_at) DO NOTHING"
                )
            ).rowcount
            if written == 0 and manifest.row_count > 0:
                raise LeftInPlaceError(
                    f"already restored: all {manifest.row_count} rows of {manifest.month} "
                    "are in user_activity_log; nothing written"
                )
    except (DBAPIError, LeftInPlaceError) as exc:
        why = first_line(exc) if isinstance(exc, DBAPIError) else str(exc)
        report.add("rows loaded", False, actual="nothing written", detail=why)
        return report
    report.note(
        "partition", Status.PASS, f"{manifest.partition} {'created' if created else 'existed'}"
    )
    already = manifest.row_count - written
    report.add(
        "rows loaded",
        True,
        actual=f"{written} written" + (f", {already} already there" if already else ""),
    )
    return report


# The pg_cron jobs `partitions schedule --apply` creates, by name: `rollback` removes them.
ENSURE_JOB = "crm-activity-partitions-ensure"
ARCHIVE_JOB = "crm-activity-partitions-archive"
CRON_JOBS = (ENSURE_JOB, ARCHIVE_JOB)

SCHEDULE_SQL = f"""\
-- Run both monthly with pg_cron (where the extension is installed, e.g. on Supabase):
SELECT cron.schedule('{ENSURE_JOB}', '0 3 1 * *',
    $$SELECT public.ensure_activity_log_partitions(11)$$);
SELECT cron.schedule('{ARCHIVE_JOB}', '30 3 1 * *',
    $$SELECT * FROM public.archive_activity_log_partitions(interval '90 days')$$);
"""


def pg_cron_installed(connection: Connection) -> bool:
    return (
        connection.execute(
            text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')")
        ).scalar()
        is True
    )


def unschedule(connection: Connection) -> list[str]:
    """Remove this package's pg_cron jobs (by name) that run in this database; returns the
    names removed. Nothing to do, and no error, where pg_cron is not installed here.

    ``cron.unschedule(name)`` finds the job by name among the current user's: the jobs
    ``schedule --apply`` made as this migrator. Jobs of the same name another user made, or
    that run in another database, are not this database's and stay.
    """
    if connection.execute(text("SELECT to_regnamespace('cron') IS NOT NULL")).scalar() is not True:
        return []
    names = (
        connection.execute(
            text(
                "SELECT jobname FROM cron.job WHERE jobname = ANY(:names) "
                "AND username = current_user AND database = current_database() ORDER BY jobname"
            ),
            {"names": list(CRON_JOBS)},
        )
        .scalars()
        .all()
    )
    for name in names:
        connection.execute(text("SELECT cron.unschedule(:name)"), {"name": name})
    return list(names)
