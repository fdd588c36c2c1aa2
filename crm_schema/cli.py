"""The ``crm-schema`` command: run the migrations and the demo.

Exit codes: 0 success, 1 a check failed, 2 the command could not run (bad input, no
database, wrong revision). Errors are one line on stderr saying what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from alembic.script import Script
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from crm_schema import __version__, embedded, migrations
from crm_schema.db import (
    DatabaseError,
    connect_checked,
    first_line,
    make_engine,
    redact,
    url_from_env,
)

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
DEMO_DATABASE = "crm_demo"


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


def _announce(script: Script) -> None:
    print(f"  {script.revision:<36} {script.doc or ''}", end="", flush=True)


def _upgrade_printing(url: str | URL, target: str) -> None:
    total = 0.0
    applied = 0
    for step in migrations.upgrade_stepwise(url, target, on_start=_announce):
        print(f"  {step.seconds:6.2f}s")
        total += step.seconds
        applied += 1
    if applied == 0:
        print(f"  already at {migrations.current_revision(url) or 'base'}: nothing to do")
    else:
        print(f"  {applied} revision(s) applied in {total:.2f}s")


def cmd_upgrade(args: argparse.Namespace) -> int:
    url = _url(args)
    print(f"Upgrading {redact(url)} to {args.to}")
    _upgrade_printing(url, args.to)
    return EXIT_OK


def cmd_downgrade(args: argparse.Namespace) -> int:
    url = _url(args)
    print(f"Downgrading {redact(url)} to {args.to}")
    migrations.downgrade(url, args.to)
    print(f"  now at {migrations.current_revision(url) or 'base'}")
    return EXIT_OK


def cmd_current(args: argparse.Namespace) -> int:
    print(migrations.current_revision(_url(args)) or "base (not migrated)")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    for script in migrations.revisions_in_order():
        print(f"{script.revision:<36} {script.doc or ''}")
    return EXIT_OK


def _recreate_database(server: embedded.EmbeddedServer, name: str) -> URL:
    with make_engine(server.url()).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return server.url(name)


def _demo_embedded(datadir: Path, keep: bool) -> int:
    began = time.perf_counter()
    print(f"Starting an embedded PostgreSQL in {datadir} ...", flush=True)
    server = embedded.start(datadir, keep=keep)
    url = _recreate_database(server, DEMO_DATABASE)
    with connect_checked(make_engine(url)) as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    print(f"  PostgreSQL {version} ready in {time.perf_counter() - began:.1f}s")
    print(f"Migrating database {DEMO_DATABASE!r} revision by revision:")
    _upgrade_printing(url, "head")
    print("Connect with:")
    print(f'  psql "postgresql://postgres@/{DEMO_DATABASE}?host={server.socket_dir}"')
    if keep:
        print("The server keeps running; stop it with: crm-schema demo --stop")
    else:
        server.stop()
        print("Server stopped (keep it running next time with: crm-schema demo --keep)")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    datadir = Path(args.dir)
    if args.stop:
        if not embedded.is_initialized(datadir.resolve()):
            raise UsageError(f"no demo server in {datadir}")
        embedded.start(datadir).stop()
        print(f"Stopped the demo server in {datadir}")
        return EXIT_OK
    url = args.url or url_from_env()
    if url:
        print(
            f"Migrating the database named by {'--url' if args.url else 'DATABASE_URL'}: "
            f"{redact(url)}"
        )
        _upgrade_printing(url, "head")
        return EXIT_OK
    return _demo_embedded(datadir, args.keep)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-schema", description="Migrate and inspect the cannabis CRM's database schema."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", help="database URL (default: $DATABASE_URL)")
        return p

    p = with_url(sub.add_parser("upgrade", help="apply migrations (default: to head)"))
    p.add_argument("--to", default="head", metavar="REV", help="target revision (default: head)")
    p.set_defaults(func=cmd_upgrade)

    p = with_url(sub.add_parser("downgrade", help="revert migrations down to a revision"))
    p.add_argument(
        "--to", required=True, metavar="REV", help="target revision, e.g. 0002_crm_baseline"
    )
    p.set_defaults(func=cmd_downgrade)

    p = with_url(sub.add_parser("current", help="print the database's revision"))
    p.set_defaults(func=cmd_current)

    p = sub.add_parser("history", help="list the revisions, oldest first")
    p.set_defaults(func=cmd_history)

    p = with_url(
        sub.add_parser(
            "demo",
            help="migrate DATABASE_URL, or with none given an embedded throwaway PostgreSQL",
        )
    )
    p.add_argument("--keep", action="store_true", help="leave the embedded server running")
    p.add_argument("--stop", action="store_true", help="stop a server left running by --keep")
    p.add_argument("--dir", default=".crm-demo/pgdata", help="embedded server data folder")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (UsageError, DatabaseError, CommandError) as exc:
        print(f"crm-schema: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except DBAPIError as exc:
        # Each revision runs in its own transaction: the failing one was rolled back.
        print(
            f"crm-schema: error: the database refused a statement, and the revision in progress "
            f"was rolled back: {first_line(exc)}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
