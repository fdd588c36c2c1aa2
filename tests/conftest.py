"""Test harness: a real PostgreSQL, a database migrated once, and a fresh clone per test.

``CRM_TEST_DATABASE_URL`` names a server to use (its database is only used to create and
drop test databases); without it an embedded throwaway PostgreSQL is started for the
session. pytest-postgresql's ``DatabaseJanitor`` creates the template and the clones.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Connection, Engine, create_engine, pool
from sqlalchemy.engine import URL, make_url

from crm_schema import embedded, migrations

REPO = Path(__file__).resolve().parents[1]
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
_names = itertools.count()


@dataclass(frozen=True)
class PgServer:
    """Where the test server is, in the pieces pytest-postgresql wants."""

    host: str
    port: int
    user: str
    password: str | None
    maintenance_dbname: str

    def url(self, dbname: str) -> URL:
        query = {"host": self.host} if self.host.startswith("/") else {}
        return URL.create(
            "postgresql+psycopg",
            username=self.user,
            password=self.password,
            host=None if query else self.host,
            port=self.port,
            database=dbname,
            query=query,
        )

    def janitor(self, dbname: str, **kwargs: Any) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=self.user,
            host=self.host,
            port=self.port,
            password=self.password,
            dbname=dbname,
            maintenance_dbname=self.maintenance_dbname,
            **kwargs,
        )


def _from_url(raw: str) -> PgServer:
    url = make_url(raw)
    host = url.host or str(url.query.get("host") or "127.0.0.1")
    return PgServer(
        host=host,
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        maintenance_dbname=url.database or "postgres",
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    raw = os.environ.get("CRM_TEST_DATABASE_URL")
    if raw:
        yield _from_url(raw)
        return
    # Not under pytest's tmp_path: pytest keeps only its three newest temporary folders, so a
    # second test session started meanwhile would delete this server's data under it.
    home = Path(tempfile.mkdtemp(prefix="crm-schema-test-pg-"))
    server = embedded.start(home / "pgdata", delete=True)
    try:
        yield _from_url(str(server.url()))
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def new_db_name(prefix: str = "crm_test") -> str:
    return f"{prefix}_{RUN_ID}_{next(_names)}"


@pytest.fixture(scope="session")
def migrated_template(pg_server: PgServer) -> Iterator[str]:
    """A database at ``head``, migrated once per session and cloned for each test."""
    name = new_db_name("crm_tmpl")

    def upgrade_head(**_: Any) -> None:
        migrations.upgrade(pg_server.url(name), "head")

    with pg_server.janitor(name, as_template=True) as janitor:
        janitor.load(upgrade_head)
        yield name


@pytest.fixture
def db_url(pg_server: PgServer, migrated_template: str) -> Iterator[URL]:
    """A fresh database at ``head``, dropped after the test."""
    name = new_db_name()
    with pg_server.janitor(name, template_dbname=migrated_template):
        yield pg_server.url(name)


@pytest.fixture
def empty_db_url(pg_server: PgServer) -> Iterator[URL]:
    """A fresh, empty database (no migrations applied), dropped after the test."""
    name = new_db_name()
    with pg_server.janitor(name):
        yield pg_server.url(name)


def _engine(url: URL) -> Engine:
    return create_engine(url, poolclass=pool.NullPool)


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    eng = _engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection to a migrated database; its transaction is rolled back after the test."""
    with engine.connect() as connection:
        yield connection
        connection.rollback()


@pytest.fixture
def make_engine() -> Iterator[Callable[[URL], Engine]]:
    made: list[Engine] = []

    def factory(url: URL) -> Engine:
        made.append(_engine(url))
        return made[-1]

    yield factory
    for eng in made:
        eng.dispose()


# pytest-alembic: migrations run against a fresh empty database.
@pytest.fixture
def alembic_engine(empty_db_url: URL) -> Iterator[Engine]:
    eng = _engine(empty_db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def alembic_config() -> dict[str, Any]:
    return {"script_location": str(migrations.script_location())}
