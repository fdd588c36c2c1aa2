"""The ``crm-schema`` command: the seed's runbook, one command per step.

Exit codes: 0 success (all checks passed), 1 a check failed or the command refused to go on,
2 the command could not run (bad input, no database, unknown revision). Errors are one line
on stderr saying what is wrong and what to do. ``--json`` prints a machine-readable report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from crm_schema import __version__, embedded, migrations, transactions
from crm_schema.db import (
    DatabaseError,
    connect_checked,
    first_line,
    make_engine,
    redact,
    url_from_env,
)
from crm_schema.runbook import (
    archive_files,
    offline,
    partitions,
    preflight,
    rollback,
    stats,
    verify,
)
from crm_schema.runbook.baseline import refuse_unstamped_baseline
from crm_schema.runbook.migration_log import (
    MigrationLogEntry,
    executed_by,
    write_file,
    write_row,
)
from crm_schema.runbook.report import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_PASS,
    Report,
    Status,
    render_json,
    render_text,
)
from crm_schema.transactions import RefusedError

DEMO_DATABASE = "crm_demo"
BASELINE = migrations.BASELINE_REVISION


class UsageError(Exception):
    """Bad input from the person at the keyboard."""


def _url(args: argparse.Namespace) -> str:
    url: str | None = args.url or url_from_env()
    if not url:
        raise UsageError(
            "no database given: set DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/DBNAME "
            "or pass --url"
        )
    return url


def _connect(args: argparse.Namespace) -> Connection:
    return connect_checked(make_engine(_url(args)))


def _known_revision(url: str) -> str | None:
    """The database's revision (None: not migrated); refuses one this package does not know."""
    current = migrations.current_revision(url)
    if current is not None and current not in migrations.revision_ids():
        raise UsageError(
            f"the database is at {current}, not a revision of this package (migrated by a "
            "newer crm-schema?): nothing was changed"
        )
    return current


def _require_revision(url: str, needed: str, command: str) -> None:
    """Refuse to run ``command`` on a database that lacks what revision ``needed`` creates."""
    ids = migrations.revision_ids()
    current = _known_revision(url)
    if current is None or ids.index(current) < ids.index(needed):
        raise UsageError(
            f"the database is at {current or 'base (not migrated)'}: `crm-schema {command}` "
            f"needs {needed} or later; run `crm-schema upgrade` first"
        )


def _check_upgrade_start(connection: Connection, url: str, target: str) -> None:
    """Refuse, before anything is written, an upgrade that would fail half-way or build the
    CRM beside someone else's tables: an unknown target or revision, or a database without an
    Alembic revision whose ``public`` schema is not empty."""
    try:
        wanted = migrations.script_directory().get_revision(target)
    except CommandError as exc:
        raise UsageError(
            f"unknown target revision {target!r}: `crm-schema history` lists them"
        ) from exc
    if wanted is not None and migrations.commits_with_next(wanted):
        raise UsageError(
            f"{wanted.revision} commits together with the revision after it: give that one as "
            "--to; nothing was changed"
        )
    if _known_revision(url) is not None:
        return
    refuse_unstamped_baseline(connection)
    tables = list(
        connection.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version' ORDER BY 1"
            )
        ).scalars()
    )
    connection.rollback()
    if tables:
        raise UsageError(
            f"the database is not empty and not the CRM ({len(tables)} table(s) in public, "
            f"e.g. {tables[0]}): point DATABASE_URL at the CRM's database or an empty one; "
            "nothing was changed"
        )


def _show(report: Report, args: argparse.Namespace) -> int:
    if getattr(args, "json", False):
        render_json(report, sys.stdout)
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        render_text(report, sys.stdout, colour=colour)
    return report.exit_code


def _quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _progress(total: int, quiet: bool) -> Callable[[str], None]:
    count = iter(range(1, total + 1))

    def announce(label: str) -> None:
        if not quiet:
            print(f"  [{next(count)}/{total}] {label:<34}", end=" ", flush=True)

    return announce


def _migrate(url: str | URL, target: str, entry: MigrationLogEntry, quiet: bool) -> None:
    announce = _progress(len(migrations.pending_commits(url, target)), quiet)
    for step in migrations.upgrade_stepwise(url, target, on_start=announce):
        entry.phases.append(
            {
                "revision": step.revision,
                "seconds": round(step.seconds, 3),
                "lock_attempts": step.lock_attempts,
            }
        )
        if not quiet:
            tries = f" ({step.lock_attempts} tries for its locks)" if step.lock_attempts > 1 else ""
            print(f"{step.seconds:6.2f}s{tries}  {step.doc}")
    entry.to_revision = migrations.current_revision(url)


def cmd_upgrade(args: argparse.Namespace) -> int:
    url = _url(args)
    quiet = _quiet(args)
    with _connect(args) as connection:
        _check_upgrade_start(connection, url, args.to)
        # A log folder that cannot be written fails now, not after the migration has run.
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
        entry = MigrationLogEntry(
            started_at=dt.datetime.now(dt.UTC).astimezone(),
            executed_by=executed_by(connection),
            from_revision=migrations.current_revision(url),
        )
    if not quiet:
        print(f"Upgrading {redact(url)} from {entry.from_revision or 'base'} to {args.to}")
    failure: BaseException | None = None
    try:
        _migrate(url, args.to, entry, quiet)
    except RefusedError:
        # RefusedError before it started (another deploy holds the lock ...): nothing to log.
        if not quiet:
            print("REFUSED")
        raise
    except (CommandError, DBAPIError) as exc:
        failure = exc
        entry.issues.append(f"migration stopped: {first_line(exc)}")
        entry.to_revision = migrations.current_revision(url)
        if not quiet:
            print("FAILED")
    if not entry.phases and failure is None and not quiet:
        print(f"  already at {entry.to_revision or 'base'}: nothing to do")
    report = None
    if failure is None and getattr(args, "skip_verify", False):
        entry.notes = "verified after loading the sample data"
    elif failure is None:
        with _connect(args) as connection:
            report = verify.run(connection, args.admin_email)
        entry.verification_status = "FAIL" if report.failures else "PASS"
        entry.issues += [f"verification: {c.name}: {c.actual}" for c in report.failures]
    # The seed's runbook: an emergency rollback if issues arise. A run that stopped part-way
    # or failed verification left the database short of a verified target.
    entry.rollback_required = failure is not None or entry.verification_status == "FAIL"
    if entry.rollback_required:
        entry.issues.append(
            f"the database is at {entry.to_revision or 'base'}, not a verified {args.to}: "
            "roll back with `crm-schema rollback`, or fix the cause and upgrade again"
        )
    entry.finished_at = dt.datetime.now(dt.UTC).astimezone()
    entry.notes = args.notes or entry.notes
    path = _record(args, entry, quiet)
    if failure is not None:
        raise failure
    if report is None:
        return EXIT_PASS
    if quiet:  # the JSON report carries what the text output printed along the way
        report.tables["Revisions"] = entry.phases
        report.notes.append(f"Migration log written to {path}")
    return _show(report, args)


def _record(args: argparse.Namespace, entry: MigrationLogEntry, quiet: bool) -> Path:
    path = write_file(entry, Path(args.log_dir))
    with _connect(args) as connection:
        stored = write_row(connection, entry)
    if not quiet:
        where = " and in public.migration_log" if stored else ""
        print(f"Migration log written to {path}{where}")
    return path


def _unschedule(args: argparse.Namespace) -> list[str]:
    """Remove the pg_cron jobs `partitions schedule --apply` made; their names."""
    with _connect(args) as connection:
        removed = partitions.unschedule(connection)
        connection.commit()
    return removed


# The revision whose functions the pg_cron jobs call (0004's ensure, 0005's archive): a
# downgrade below it removes the jobs first, as the rollback does.
SCHEDULED_FUNCTIONS_REVISION = "0005_phase3_functions_triggers"


def cmd_downgrade(args: argparse.Namespace) -> int:
    url = _url(args)
    print(f"Downgrading {redact(url)} to {args.to}")
    ids = migrations.revision_ids()
    target = migrations.script_directory().get_revision(args.to)
    below = target is None or ids.index(target.revision) < ids.index(SCHEDULED_FUNCTIONS_REVISION)
    if below and (removed := _unschedule(args)):
        print(f"  removed pg_cron jobs: {', '.join(removed)}")
    migrations.downgrade(url, args.to)
    print(f"  now at {migrations.current_revision(url) or 'base'}")
    return EXIT_PASS


def cmd_current(args: argparse.Namespace) -> int:
    with _connect(args) as connection:
        partial = transactions.half_applied_text(connection)
    print(migrations.current_revision(_url(args)) or "base (not migrated)")
    if partial is not None:
        print(f"  with {partial}: {transactions.NEXT_STEP}")
    return EXIT_PASS


def cmd_history(args: argparse.Namespace) -> int:
    for script in migrations.revisions_in_order():
        print(f"{script.revision:<36} {(script.doc or '').splitlines()[0]}")
    return EXIT_PASS


def cmd_preflight(args: argparse.Namespace) -> int:
    with _connect_any_version(args) as connection:
        email = args.admin_email or preflight.DEFAULT_ADMIN_EMAIL
        report = preflight.run(connection, email, args.backup_confirmed)
    return _show(report, args)


def _connect_any_version(args: argparse.Namespace) -> Connection:
    """Pre-flight reports an old server as a failed check rather than refusing to run."""
    engine = make_engine(_url(args))
    try:
        return engine.connect()
    except DBAPIError as exc:
        raise DatabaseError(
            f"cannot connect to {redact(engine.url)}: {first_line(exc)} "
            "(check the host, port, user, password and database name in DATABASE_URL)"
        ) from exc


def cmd_verify(args: argparse.Namespace) -> int:
    if _known_revision(_url(args)) is None:
        raise UsageError(
            "the database is not migrated (no Alembic revision): there is nothing to verify; "
            "run `crm-schema upgrade` first"
        )
    with _connect(args) as connection:
        return _show(verify.run(connection, args.admin_email), args)


def cmd_rollback(args: argparse.Namespace) -> int:
    url = _url(args)
    current = _known_revision(url)
    known = migrations.revision_ids()
    if current is None or known.index(current) <= known.index(BASELINE):
        done = Report("Rollback", notes=[f"Already at {current or 'base'}: nothing to roll back"])
        return _show(done, args)
    with _connect(args) as connection:
        lost = rollback.discarded(connection)
        connection.rollback()
    if lost and not args.yes and _quiet(args):
        refused = Report("Rollback refused: run again with --yes to discard this data")
        for kind, count in lost.items():
            refused.add(f"would discard {kind}", False, expected=0, actual=count)
        return _show(refused, args)
    if lost and not args.yes:
        print("Refusing to roll back: it would discard", file=sys.stderr)
        for kind, count in lost.items():
            print(f"  {count:>8}  {kind}", file=sys.stderr)
        print("Take a backup of these, then run again with --yes.", file=sys.stderr)
        return EXIT_FAILED
    if not _quiet(args):
        print(f"Rolling back {redact(url)} from {current} to {BASELINE}")
    began = time.perf_counter()
    # Before the downgrade drops the functions they call: a job left behind would fail
    # every month.
    removed = _unschedule(args)
    if removed and not _quiet(args):
        print(f"Removed pg_cron jobs: {', '.join(removed)}")
    migrations.downgrade(url, BASELINE)
    with _connect(args) as connection:
        report = rollback.verify_rolled_back(connection)
    report.note("pg_cron jobs removed", Status.INFO, ", ".join(removed) or "none scheduled here")
    report.notes.append(f"Rolled back in {time.perf_counter() - began:.2f}s.")
    return _show(report, args)


def cmd_sql(args: argparse.Namespace) -> int:
    if args.supabase:
        written = offline.write_supabase(Path(args.supabase))
    else:
        written = offline.write(Path(args.out))
    if _quiet(args):
        files = [{"file": str(path)} for path in written]
        render_json(Report("SQL files", tables={"Written": files}), sys.stdout)
        return EXIT_PASS
    for path in written:
        print(f"wrote {path}")
    return EXIT_PASS


# The revision that creates the database function each partitions action calls.
PARTITIONS_NEED = {
    "ensure": "0004_phase2_indexes_constraints",
    "archive": "0005_phase3_functions_triggers",
    "restore": "0004_phase2_indexes_constraints",
    "schedule": "0005_phase3_functions_triggers",
}


def _archive_manifest(args: argparse.Namespace) -> Path:
    """``partitions restore``'s argument: an archive's manifest, or its data file."""
    if not args.path:
        raise UsageError(
            "`crm-schema partitions restore` needs the archive file: "
            "DIR/user_activity_log_YYYY_MM.json (or its .csv.gz)"
        )
    manifest = archive_files.manifest_for(Path(args.path))
    if not manifest.is_file():
        raise UsageError(f"no archive manifest {manifest}: give a file `--export` wrote")
    return manifest


def cmd_partitions(args: argparse.Namespace) -> int:
    if args.action == "schedule":
        return _schedule(args)
    if args.path and args.action != "restore":
        raise UsageError(f"`partitions {args.action}` takes no file argument ({args.path})")
    manifest = _archive_manifest(args) if args.action == "restore" else None
    _require_revision(_url(args), PARTITIONS_NEED[args.action], f"partitions {args.action}")
    with _connect(args) as connection:
        if args.action == "ensure":
            return _show(partitions.ensure(connection, args.months_ahead), args)
        if manifest is not None:
            return _show(partitions.restore(connection, manifest), args)
        if args.export or args.dry_run:
            export = Path(args.export) if args.export else None
            return _show(
                partitions.archive_to_files(
                    connection, args.older_than, export, args.dry_run, args.drop
                ),
                args,
            )
        return _show(partitions.archive(connection, args.older_than, args.drop), args)


def _schedule(args: argparse.Namespace) -> int:
    quiet = _quiet(args)
    report = Report("pg_cron schedule", notes=[partitions.SCHEDULE_SQL])
    if not quiet:
        print(partitions.SCHEDULE_SQL, end="")
    if args.apply:
        _require_revision(_url(args), PARTITIONS_NEED["schedule"], "partitions schedule")
        with _connect(args) as connection:
            if not partitions.pg_cron_installed(connection):
                raise UsageError(
                    "pg_cron is not installed in this database: run the SQL above "
                    "where it is, or schedule `crm-schema partitions ...` with cron"
                )
            connection.execute(text(partitions.SCHEDULE_SQL))
            connection.commit()
        report.note("scheduled", Status.PASS, "both jobs, monthly")
        if not quiet:
            print("scheduled")
    if quiet:
        render_json(report, sys.stdout)
    return EXIT_PASS


def cmd_seed_data(args: argparse.Namespace) -> int:
    from crm_schema import seed_data  # imported late: only this command needs it

    with _connect(args) as connection:
        try:
            counts = seed_data.generate(
                connection,
                args.scale,
                seed=args.seed,
                progress=lambda table, rows, secs: print(f"  {table:<22}{rows:>10}  {secs:7.2f}s"),
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    print(f"Generated {counts}")
    return EXIT_PASS


def cmd_stats(args: argparse.Namespace) -> int:
    if args.permissions:
        _require_revision(_url(args), stats.DEFAULTS_REVISION, "stats --permissions")
        with _connect(args) as connection:
            return _show(stats.permission_review(connection), args)
    _require_revision(_url(args), "0003_phase1_schema_structure", "stats")
    with _connect(args) as connection:
        return _show(stats.run(connection), args)


def _recreate_database(server: embedded.EmbeddedServer, name: str) -> URL:
    with make_engine(server.url()).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return server.url(name)


def _demo_on(url: str | URL, args: argparse.Namespace) -> int:
    args.url = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    args.to, args.notes, args.json, args.skip_verify = "head", "crm-schema demo", False, True
    cmd_upgrade(args)
    from crm_schema import demo_data  # imported late: only the demo needs it

    with _connect(args) as connection:
        summary = demo_data.load(connection)
    print(f"Loaded a sample CRM: {summary}")
    with _connect(args) as connection:
        verified = _show(verify.run(connection, args.admin_email), args)
    with _connect(args) as connection:
        _show(stats.run(connection), args)
    return verified


def _demo_embedded(datadir: Path, args: argparse.Namespace) -> int:
    began = time.perf_counter()
    print(f"Starting an embedded PostgreSQL in {datadir} ...", flush=True)
    server = embedded.start(datadir, keep=args.keep)
    url = _recreate_database(server, DEMO_DATABASE)
    with connect_checked(make_engine(url)) as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    print(f"  PostgreSQL {version} ready in {time.perf_counter() - began:.1f}s")
    verified = _demo_on(url, args)
    print("\nConnect with:")
    print(f'  psql "postgresql://postgres@/{DEMO_DATABASE}?host={server.socket_dir}"')
    if args.keep:
        print("The server keeps running; stop it with: crm-schema demo --stop")
    else:
        server.stop()
        print("Server stopped (keep it running next time with: crm-schema demo --keep)")
    return verified


def cmd_demo(args: argparse.Namespace) -> int:
    datadir = Path(args.dir)
    if args.stop:
        if not embedded.is_initialized(datadir.resolve()):
            raise UsageError(f"no demo server in {datadir}")
        embedded.start(datadir).stop()
        print(f"Stopped the demo server in {datadir}")
        return EXIT_PASS
    url = args.url or url_from_env()
    if url:
        where = "--url" if args.url else "DATABASE_URL"
        print(f"Migrating the database named by {where}: {redact(url)}")
        return _demo_on(url, args)
    return _demo_embedded(datadir, args)


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_: str,
    func: Callable[[argparse.Namespace], int],
    *,
    url: bool = True,
    json: bool = False,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_, description=help_)
    if url:
        parser.add_argument("--url", help="database URL (default: $DATABASE_URL)")
    if json:
        parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.set_defaults(func=func)
    return parser


def _admin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-email",
        help=(
            f"the admin user the checks look for (default: {preflight.DEFAULT_ADMIN_EMAIL}; "
            "after a migration it is checked only if it exists, unless given here)"
        ),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-schema", description="Migrate, check and maintain the cannabis CRM's database."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _add(sub, "preflight", "read-only checks before migrating", cmd_preflight, json=True)
    _admin_option(p)
    p.add_argument("--backup-confirmed", action="store_true", help="a backup has been taken")

    p = _add(
        sub,
        "upgrade",
        "migrate (default: to head), verify, write the migration log",
        cmd_upgrade,
        json=True,
    )
    p.add_argument("--to", default="head", metavar="REV", help="target revision")
    p.add_argument("--notes", help="notes for the migration log")
    p.add_argument("--log-dir", default="migration-logs", help="where the log file goes")
    _admin_option(p)

    p = _add(
        sub,
        "verify",
        "the seed's post-migration checks and this project's invariants",
        cmd_verify,
        json=True,
    )
    _admin_option(p)

    p = _add(
        sub,
        "rollback",
        "emergency rollback to 0002_crm_baseline, then verify",
        cmd_rollback,
        json=True,
    )
    p.add_argument("--yes", action="store_true", help="discard the enhancement's data")

    p = _add(
        sub,
        "sql",
        "write the seed's two SQL files, or Supabase CLI migrations",
        cmd_sql,
        url=False,
        json=True,
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="folder for the .sql files")
    target.add_argument(
        "--supabase",
        metavar="DIR",
        help="a Supabase CLI project: one migration per commit in DIR/supabase/migrations/ "
        "and a pgTAP test in DIR/supabase/tests/",
    )

    p = _add(sub, "partitions", "activity-log partition maintenance", cmd_partitions, json=True)
    p.add_argument("action", choices=["ensure", "archive", "restore", "schedule"])
    p.add_argument(
        "path", nargs="?", metavar="FILE", help="restore: an archive's .json (or .csv.gz)"
    )
    p.add_argument("--months-ahead", type=int, default=11, help="ensure: months after this one")
    p.add_argument("--older-than", default="90d", help="archive: age, e.g. 90d, 12w, 6m")
    p.add_argument("--drop", action="store_true", help="archive: drop instead of detaching")
    p.add_argument(
        "--export",
        metavar="DIR",
        help="archive: write each month to DIR (csv.gz + manifest), verify, then drop it",
    )
    p.add_argument("--dry-run", action="store_true", help="archive: list what it would do")
    p.add_argument("--apply", action="store_true", help="schedule: run the pg_cron SQL")

    p = _add(
        sub, "stats", "monitoring: activity log, change log, permissions", cmd_stats, json=True
    )
    p.add_argument(
        "--permissions",
        action="store_true",
        help="the yearly permission review: overrides, and role defaults changed since migrating",
    )

    p = _add(
        sub,
        "seed-data",
        "fill an empty, migrated database with a realistic sample CRM",
        cmd_seed_data,
    )
    p.add_argument(
        "--scale", type=float, default=0.01, help="1 = 1,000,000 orders (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=42, help="same seed, same data")

    p = _add(sub, "downgrade", "revert migrations down to a revision", cmd_downgrade)
    p.add_argument("--to", required=True, metavar="REV", help="e.g. 0002_crm_baseline")
    _add(sub, "current", "print the database's revision", cmd_current)
    _add(sub, "history", "list the revisions, oldest first", cmd_history, url=False)

    p = _add(
        sub,
        "demo",
        "migrate DATABASE_URL (or an embedded PostgreSQL), load a sample CRM, verify, show stats",
        cmd_demo,
    )
    p.add_argument("--keep", action="store_true", help="leave the embedded server running")
    p.add_argument("--stop", action="store_true", help="stop a server left running by --keep")
    p.add_argument("--dir", default=".crm-demo/pgdata", help="embedded server data folder")
    p.add_argument("--log-dir", default=".crm-demo/migration-logs", help=argparse.SUPPRESS)
    _admin_option(p)
    return parser


def _error(args: argparse.Namespace, message: str) -> int:
    """One line on stderr; with --json also a JSON object on stdout, so automation that reads
    stdout learns why there is no report."""
    print(f"crm-schema: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        json.dump({"error": message, "exit_code": EXIT_ERROR}, sys.stdout)
        print()
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The driver's own warnings (e.g. a cancel that met a lock timeout on Ctrl-C) would print
    # beside the one line this command says about the same event.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    try:
        code: int = args.func(args)
    except (UsageError, DatabaseError, CommandError) as exc:
        return _error(args, str(exc))
    except KeyboardInterrupt:  # outside a migration (a revision says where it stopped)
        print("crm-schema: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a folder given by --out or --log-dir that cannot be written
        return _error(args, f"cannot write {exc.filename}: {exc.strerror}")
    except DBAPIError as exc:
        # Each revision runs in its own transaction: the failing one was rolled back.
        migrating = args.func in (cmd_upgrade, cmd_downgrade, cmd_rollback, cmd_demo)
        rolled_back = " (a migration in progress was rolled back)" if migrating else ""
        return _error(args, f"the database refused a statement{rolled_back}: {first_line(exc)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
