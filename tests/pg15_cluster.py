"""A private, throwaway PostgreSQL 15 cluster started with server settings of a test's own.

pg_cron needs ``shared_preload_libraries`` and lives in one database, ``cron.database_name``;
on Supabase that is the project's own database. The shared test server cannot be restarted
per test, and its pg_cron database is not one the suite may migrate, so a test that needs
pg_cron in the migrated database starts its own cluster with the machine's PostgreSQL 15
binaries (Debian's layout), listening only on a socket in its own folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


def _pg_config(option: str) -> Path | None:
    pg_config = PG15_BIN / "pg_config"
    if not pg_config.is_file():
        return None
    out = subprocess.run([pg_config, option], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def missing(extension: str, library: str | None = None) -> str | None:
    """Why a PostgreSQL 15 cluster with ``extension`` cannot be had here, or None."""
    share = _pg_config("--sharedir")
    if share is None:
        return f"no PostgreSQL 15 server binaries in {PG15_BIN}"
    if not (share / "extension" / f"{extension}.control").is_file():
        return f"the {extension} extension is not installed for PostgreSQL 15"
    libdir = _pg_config("--pkglibdir")
    if library and libdir and not (libdir / f"{library}.so").is_file():
        return f"{library}.so is not installed for PostgreSQL 15"
    return None


def _as_owner(*command: str | Path) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the Debian service's user.
    args = [str(c) for c in command]
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def cluster(settings: dict[str, str]) -> Iterator[URL]:
    """Start a cluster with ``settings``; yields the URL of its ``postgres`` database."""
    home = Path(tempfile.mkdtemp(prefix="crm-schema-pg15-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
    data = home / "data"
    options = {"listen_addresses": "''", "unix_socket_directories": f"'{home}'", **settings}
    flags = " ".join(f"-c {k}={v}" for k, v in options.items())
    try:
        subprocess.run(
            _as_owner(PG15_BIN / "initdb", "-A", "trust", "-U", "postgres", "-D", data),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            _as_owner(
                PG15_BIN / "pg_ctl", "-D", data, "-o", flags, "-w", "-l", home / "log", "start"
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield URL.create(
                "postgresql+psycopg",
                username="postgres",
                database="postgres",
                query={"host": str(home)},
            )
        finally:
            subprocess.run(
                _as_owner(PG15_BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop"),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
