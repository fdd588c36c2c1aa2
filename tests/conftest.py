"""Test harness: a real PostgreSQL, a database migrated once, and a fresh clone per test.

``CRM_TEST_DATABASE_URL`` names a server to use (its database is only used to create and
drop test databases); without it an embedded throwaway PostgreSQL is started for the
session. pytest-postgresql's ``DatabaseJanitor`` creates the template and the clones.

``CRM_TEST_SUPABASE_SHAPE=1`` makes every test database Supabase-shaped (tests/supabase_shape.sql:
Supabase's roles, its default privileges in public, Supabase Auth's ``auth`` schema) and runs
the migrations, and the tests' own connections, as a migrator that is not a superuser, as on
Supabase. The databases are still made by the server's superuser.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Connection, Engine, create_engine, pool
from sqlalchemy.engine import URL, make_url

from crm_schema import embedded, migrations, seed_data

REPO = Path(__file__).resolve().parents[1]
SUPABASE_SHAPE = os.environ.get("CRM_TEST_SUPABASE_SHAPE") == "1"
SHAPE_SQL = Path(__file__).with_name("supabase_shape.sql")
SUPABASE_MIGRATOR = "crm_supabase_postgres"
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
_names = itertools.count()


# The Supabase-shaped template's name, once base_template has made it: every database the
# tests make starts from it (a database's own grants are not copied from a template).
_SHAPED_TEMPLATE: list[str] = []


class _Janitor(DatabaseJanitor):
    def init(self) -> None:
        super().init()
        if SUPABASE_SHAPE:
            with self.cursor() as cur:
                cur.execute(
                    f'GRANT CREATE, CONNECT, TEMPORARY ON DATABASE "{self.dbname}" '
                    f"TO {SUPABASE_MIGRATOR}"
                )


@dataclass(frozen=True)
class PgServer:
    """Where the test server is, in the pieces pytest-postgresql wants."""

    host: str
    port: int
    user: str
    password: str | None
    maintenance_dbname: str
    app_user: str | None = None  # who migrates and runs the tests; the superuser by default

    def url(self, dbname: str) -> URL:
        query = {"host": self.host} if self.host.startswith("/") else {}
        return URL.create(
            "postgresql+psycopg",
            username=self.app_user or self.user,
            password=self.password,
            host=None if query else self.host,
            port=self.port,
            database=dbname,
            query=query,
        )

    def janitor(self, dbname: str, **kwargs: Any) -> DatabaseJanitor:
        if SUPABASE_SHAPE and _SHAPED_TEMPLATE and dbname != _SHAPED_TEMPLATE[0]:
            kwargs["template_dbname"] = kwargs.get("template_dbname") or _SHAPED_TEMPLATE[0]
        return _Janitor(
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
        app_user=SUPABASE_MIGRATOR if SUPABASE_SHAPE else None,
    )


def _shape_sql(part: str) -> str:
    """One part (``cluster`` or ``database``) of tests/supabase_shape.sql."""
    text = SHAPE_SQL.read_text()
    cluster, database = text.split("-- @database", 1)
    return cluster.split("-- @cluster", 1)[1] if part == "cluster" else database


def _run_as_superuser(server: PgServer, dbname: str, sql: str) -> None:
    with psycopg.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        dbname=dbname,
        autocommit=True,
    ) as connection:
        connection.execute(sql.encode())  # no parameters: psycopg leaves the % signs alone


@pytest.fixture(scope="session")
def base_template(pg_server: PgServer) -> Iterator[str | None]:
    """The template every test database starts from: none (an empty database), or with
    CRM_TEST_SUPABASE_SHAPE=1 a Supabase-shaped one."""
    if not SUPABASE_SHAPE:
        yield None
        return
    _run_as_superuser(pg_server, pg_server.maintenance_dbname, _shape_sql("cluster"))
    name = new_db_name("crm_supa")
    _SHAPED_TEMPLATE[:] = [name]
    with pg_server.janitor(name, as_template=True):
        _run_as_superuser(pg_server, name, _shape_sql("database"))
        yield name


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
def migrated_template(pg_server: PgServer, base_template: str | None) -> Iterator[str]:
    """A database at ``head``, migrated once per session and cloned for each test."""
    name = new_db_name("crm_tmpl")

    def upgrade_head(**_: Any) -> None:
        migrations.upgrade(pg_server.url(name), "head")

    with pg_server.janitor(name, as_template=True, template_dbname=base_template) as janitor:
        janitor.load(upgrade_head)
        yield name


@contextmanager
def seeded_template(pg_server: PgServer, prefix: str, scale: float, revision: str) -> Iterator[str]:
    """A template database holding seed_data's CRM at ``scale`` (loaded at the baseline),
    then migrated to ``revision``; dropped on exit."""
    name = new_db_name(prefix)

    def load(**_: Any) -> None:
        url = pg_server.url(name)
        migrations.upgrade(url, migrations.BASELINE_REVISION)
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.connect() as connection:
            seed_data.generate(connection, scale)
        engine.dispose()
        migrations.upgrade(url, revision)

    with pg_server.janitor(name, as_template=True) as janitor:
        janitor.load(load)
        yield name


@pytest.fixture
def db_url(pg_server: PgServer, migrated_template: str) -> Iterator[URL]:
    """A fresh database at ``head``, dropped after the test."""
    name = new_db_name()
    with pg_server.janitor(name, template_dbname=migrated_template):
        yield pg_server.url(name)


@pytest.fixture
def empty_db_url(pg_server: PgServer, base_template: str | None) -> Iterator[URL]:
    """A fresh database with no migrations applied (empty, or Supabase-shaped), dropped after
    the test."""
    name = new_db_name()
    with pg_server.janitor(name, template_dbname=base_template):
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
