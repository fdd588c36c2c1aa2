"""The entry points as a DBA uses them: ``crm-schema`` and ``alembic`` from the repository
root, including every bad-input path (one clear line, exit 2, nothing changed)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from crm_schema import cli, db, embedded, migrations
from tests import catalog
from tests.conftest import REPO

BIN = Path(sys.executable).parent
HEAD = migrations.revisions_in_order()[-1].revision


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CRM_"))}
    env.update(extra)
    return env


def run(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120, check=False
    )


# crm-schema writes migration logs into its working folder: keep them out of the checkout,
# and leave nothing behind when the session ends.
SCRATCH = Path(tempfile.mkdtemp(prefix="crm-cli-"))
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)


def crm(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "crm-schema"), *args, cwd=SCRATCH, **env)


def alembic(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "alembic"), *args, **env)


def psql() -> str:
    return shutil.which("psql") or str(embedded.bin_dir() / "psql")


def psql_file(url: URL, script: Path) -> subprocess.CompletedProcess[str]:
    """Apply a SQL file the way a DBA would: ``psql -f``, stopping at the first error."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return run(psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script), conninfo)


def url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def test_embedded_psql_is_there_for_machines_without_one() -> None:
    # psql_file() falls back to it where the machine has no psql of its own.
    psql = embedded.bin_dir() / "psql"
    assert "psql (PostgreSQL)" in run(str(psql), "--version").stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crm-schema: error: ")
    return lines[0]


@pytest.fixture
def empty_engine(empty_db_url: URL, make_engine: Any) -> Engine:
    engine: Engine = make_engine(empty_db_url)
    return engine


def _tables(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            ).scalars()
        )


def test_no_database_url() -> None:
    assert "set DATABASE_URL" in one_error_line(crm("upgrade"))
    result = alembic("upgrade", "head")
    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:1/crm",
            "cannot connect to postgresql://postgres@127.0.0.1:1/crm",
        ),
        ("not a url", "not a database URL"),
        (
            "postgresql://postgres@127.0.0.1:1/crm?connect_timeout=soon",
            "cannot connect to postgresql://postgres@127.0.0.1:1/crm?connect_timeout=soon: "
            "bad value for connect_timeout",
        ),
        ("mysql://root@localhost/crm", "only supports PostgreSQL"),
    ],
)
def test_bad_urls_give_one_line(url: str, expected: str) -> None:
    assert expected in one_error_line(crm("upgrade", "--url", url))


def test_password_is_never_printed() -> None:
    line = one_error_line(crm("upgrade", "--url", "postgresql://u:hunter2@127.0.0.1:1/crm"))
    assert "hunter2" not in line
    assert "***" in line


def test_missing_database_is_named(empty_db_url: URL) -> None:
    line = one_error_line(
        crm("upgrade", "--url", url_text(empty_db_url.set(database="no_such_db_x")))
    )
    assert 'database "no_such_db_x" does not exist' in line


def test_server_too_old_changes_nothing(
    empty_db_url: URL, empty_engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # The real server, held to a bar it cannot meet: the refusal path end to end.
    monkeypatch.setattr(db, "MIN_SERVER_VERSION_NUM", 9_990_000)
    assert cli.main(["upgrade", "--url", url_text(empty_db_url)]) == 2
    assert "too old: crm-schema needs PostgreSQL 15 or newer" in capsys.readouterr().err
    assert _tables(empty_engine) == []


def test_upgrade_reports_each_revision(empty_db_url: URL, tmp_path: Path) -> None:
    result = crm("upgrade", "--url", url_text(empty_db_url), "--log-dir", str(tmp_path))
    # An empty database has no admin user yet: the seed's admin check is skipped, not failed.
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.strip().startswith("SKIP")]
    assert len(skipped) == 1
    assert "stokes@cakeoklahoma.com may read profiles" in skipped[0]
    for script in migrations.revisions_in_order():
        assert script.revision in result.stdout
    assert migrations.current_revision(empty_db_url) == HEAD
    again = crm("upgrade", "--log-dir", str(tmp_path), DATABASE_URL=url_text(empty_db_url))
    assert again.returncode == 0, again.stderr
    assert f"already at {HEAD}: nothing to do" in again.stdout


def test_alembic_from_repo_root_up_and_down(empty_db_url: URL) -> None:
    env = {"DATABASE_URL": url_text(empty_db_url)}
    ids = migrations.revision_ids()
    assert alembic("upgrade", "head", **env).returncode == 0
    assert migrations.current_revision(empty_db_url) == ids[-1]
    assert alembic("downgrade", "-1", **env).returncode == 0
    assert migrations.current_revision(empty_db_url) == ids[-2]
    assert alembic("downgrade", "base", **env).returncode == 0
    assert migrations.current_revision(empty_db_url) is None
    # -x url= overrides DATABASE_URL.
    result = alembic(
        "-x",
        f"url={url_text(empty_db_url)}",
        "upgrade",
        "head",
        DATABASE_URL="postgresql://x@127.0.0.1:1/x",
    )
    assert result.returncode == 0, result.stderr


def test_errors_under_json_are_json_too() -> None:
    """Automation reading stdout learns why there is no report; people still get one line."""
    for args in (("verify", "--json"), ("preflight", "--json"), ("stats", "--json")):
        result = crm(*args, "--url", "postgresql://postgres@127.0.0.1:1/crm")
        line = one_error_line(result)
        error = json.loads(result.stdout)
        assert error == {"error": line.removeprefix("crm-schema: error: "), "exit_code": 2}


def test_lock_timeout_fails_cleanly_instead_of_queueing(
    empty_db_url: URL, empty_engine: Engine, tmp_path: Path
) -> None:
    command.upgrade(migrations.make_config(empty_db_url), "0001_supabase_compat")
    with empty_engine.connect() as blocker:
        # A long-running transaction holding a lock the baseline needs (its FK to auth.users).
        blocker.execute(text("SET application_name = 'long-report'"))
        blocker.execute(text("LOCK TABLE auth.users IN ACCESS EXCLUSIVE MODE"))
        pid = blocker.execute(text("SELECT pg_backend_pid()")).scalar()
        result = crm(
            "upgrade",
            "--url",
            url_text(empty_db_url),
            "--log-dir",
            str(tmp_path),
            CRM_LOCK_RETRIES="3",
        )
        blocker.rollback()
    line = one_error_line(result)
    # Which revision, which table, and who held it, in one line.
    assert "0002_crm_baseline (upgrade) stopped: could not lock" in line
    assert "auth.users" in line
    assert "in 3 attempts" in line
    assert f"pid {pid} (long-report, idle in transaction, transaction open" in line
    assert "holds auth.users" in line
    assert migrations.current_revision(empty_db_url) == "0001_supabase_compat"
    # The migration log says the run stopped short and that the runbook's rollback applies.
    text_log = next(tmp_path.glob("migration-*.txt")).read_text()
    assert "Rollback Required: [X] YES [ ] NO" in text_log
    assert "the database is at 0001_supabase_compat, not a verified head" in text_log


def test_bad_lock_timeout_value_is_refused(empty_db_url: URL, empty_engine: Engine) -> None:
    line = one_error_line(crm("upgrade", "--url", url_text(empty_db_url), CRM_LOCK_TIMEOUT="soon"))
    assert "invalid lock_timeout 'soon'" in line
    assert _tables(empty_engine) == []


def test_second_concurrent_migration_is_refused(empty_db_url: URL, empty_engine: Engine) -> None:
    with empty_engine.connect() as other_deploy:
        other_deploy.execute(text("SELECT pg_advisory_lock(1668443487)"))
        other_deploy.commit()
        line = one_error_line(crm("upgrade", "--url", url_text(empty_db_url)))
    assert "another crm-schema migration is running" in line
    assert _tables(empty_engine) == []


def test_offline_sql_builds_the_same_schema(
    empty_db_url: URL, empty_engine: Engine, db_url: URL, make_engine: Any, tmp_path: Path
) -> None:
    result = alembic("upgrade", "head", "--sql")
    assert result.returncode == 0, result.stderr
    sql = result.stdout
    assert "SET lock_timeout = '1min'" in sql
    assert "CREATE TABLE public.profiles" in sql
    script = tmp_path / "upgrade.sql"
    script.write_text(sql)
    applied = psql_file(empty_db_url, script)
    assert applied.returncode == 0, applied.stderr
    with empty_engine.connect() as connection:
        offline = catalog.snapshot(connection)
    with make_engine(db_url).connect() as connection:
        online = catalog.snapshot(connection)
    assert catalog.diff(online, offline) == ""
    assert migrations.current_revision(empty_db_url) == HEAD


def test_history_and_version() -> None:
    result = crm("history")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith("0001_supabase_compat")
    assert crm("--version").stdout.startswith("crm-schema ")


def test_demo_on_embedded_server(tmp_path: Path) -> None:
    datadir = tmp_path / "pgdata"
    result = crm("demo", "--dir", str(datadir))
    assert result.returncode == 0, result.stderr
    for script in migrations.revisions_in_order():
        assert script.revision in result.stdout
    assert "Loaded a sample CRM: " in result.stdout
    assert "FAIL" not in result.stdout
    assert "Result: all checks passed" in result.stdout
    assert "Changes per table" in result.stdout  # the monitoring report closes the demo
    assert 'psql "postgresql://postgres@/crm_demo?host=' in result.stdout
    assert "Server stopped" in result.stdout
    assert not (datadir / "postmaster.pid").exists()


def test_demo_keep_then_stop(tmp_path: Path) -> None:
    datadir = tmp_path / "pgdata"
    kept = crm("demo", "--keep", "--dir", str(datadir))
    assert kept.returncode == 0, kept.stderr
    assert (datadir / "postmaster.pid").exists()
    stopped = crm("demo", "--stop", "--dir", str(datadir))
    assert stopped.returncode == 0, stopped.stderr
    assert not (datadir / "postmaster.pid").exists()


def test_demo_migrates_the_given_database(empty_db_url: URL) -> None:
    result = crm("demo", DATABASE_URL=url_text(empty_db_url))
    assert result.returncode == 0, result.stderr
    assert "DATABASE_URL" in result.stdout
    assert migrations.current_revision(empty_db_url) == HEAD
