"""The pgTAP test `crm-schema sql --supabase` writes for `supabase test db`, run with pgTAP on a
migrated database: every test passes, and it catches a hole in the access model.

Skipped where the server has no pgTAP (Debian's postgresql-15-pgtap; not in the embedded
PostgreSQL)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tests.test_cli import crm, psql, run


def _pgtap_available(engine: Engine) -> bool:
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgtap')")
        ).scalar()
    return found is True


@pytest.fixture
def pgtap_db(db_url: URL, make_engine: Any, pg_server: Any) -> URL:
    """A database at head with pgTAP installed by the server's superuser (`supabase test db`
    has it installed for you); the test runs as the migrator (`postgres` on Supabase)."""
    engine = make_engine(db_url.set(username=pg_server.user))
    if not _pgtap_available(engine):
        pytest.skip("pgTAP is not installed on this server (Debian: postgresql-15-pgtap)")
    with engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION pgtap"))
    return db_url


def _run_test_file(url: URL, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    written = crm("sql", "--supabase", str(tmp_path))
    assert written.returncode == 0, written.stderr
    test_file = tmp_path / "supabase" / "tests" / "crm_schema_test.sql"
    assert f"wrote {test_file}" in written.stdout
    # Tuples only, unaligned: plain TAP, as pg_prove reads it.
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return run(
        psql(), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-f", str(test_file), conninfo
    )


def _tap(output: str) -> tuple[int, list[str], list[str]]:
    planned = re.search(r"^1\.\.(\d+)$", output, re.M)
    assert planned is not None, output
    passed = re.findall(r"^ok \d+ - (.*)$", output, re.M)
    failed = re.findall(r"^not ok \d+ - (.*)$", output, re.M)
    return int(planned.group(1)), passed, failed


def test_every_pgtap_check_passes_on_a_migrated_database(pgtap_db: URL, tmp_path: Path) -> None:
    result = _run_test_file(pgtap_db, tmp_path)
    assert result.returncode == 0, result.stderr
    planned, passed, failed = _tap(result.stdout)
    assert (failed, len(passed)) == ([], planned), result.stdout
    assert "an agent sees only the dispensaries assigned to it" in passed
    assert "anon sees no row of any table or view in public" in passed


def test_pgtap_catches_each_hole_and_leaves_nothing_behind(
    pgtap_db: URL, make_engine: Any, pg_server: Any, tmp_path: Path
) -> None:
    holes = (
        "ALTER TABLE public.products DISABLE ROW LEVEL SECURITY",
        "GRANT INSERT ON public.products TO anon",
        "GRANT USAGE ON SCHEMA private TO anon",
        "GRANT SELECT ON public.user_activity_overflow TO authenticated",
        "CREATE FUNCTION public.peek() RETURNS int LANGUAGE sql SECURITY DEFINER "
        "SET search_path = '' AS 'SELECT 1'",
        "GRANT SELECT ON public.role_permissions TO anon",
        "CREATE POLICY anon_peek ON public.role_permissions FOR SELECT TO anon USING (true)",
        "CREATE POLICY peek ON public.dispensary_profiles FOR SELECT TO authenticated USING (true)",
    )
    with make_engine(pgtap_db.set(username=pg_server.user)).begin() as connection:
        for hole in holes:
            connection.execute(text(hole))
        before = connection.execute(text("SELECT count(*) FROM auth.users")).scalar_one()
    result = _run_test_file(pgtap_db, tmp_path)
    _, _, failed = _tap(result.stdout)
    assert failed == [
        "Row Level Security is on for every table in public",
        "anon may write no table or view in public",
        "no SECURITY DEFINER function is in a schema the API exposes",
        "no API role may read an activity-log partition or archived month directly",
        "anon may not use schema private, where the privileged functions are",
        "anon sees no row of any table or view in public",
        "an agent sees only the dispensaries assigned to it",
    ], result.stdout
    with make_engine(pgtap_db).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM auth.users")).scalar_one() == before
        assert (
            connection.execute(
                text("SELECT count(*) FROM public.dispensary_profiles WHERE name LIKE 'pgTAP%'")
            ).scalar_one()
            == 0
        )
