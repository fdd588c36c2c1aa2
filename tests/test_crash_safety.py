"""A migration killed at any point leaves a database that ``crm-schema upgrade`` finishes and
``crm-schema rollback --yes`` restores exactly to the baseline.

The kill is the real thing: the migration's own server process is terminated
(``pg_terminate_backend``) just before it runs its N-th statement, for every N of revision
0004 (the one revision that commits in steps). A client killed by SIGKILL or a server stopped
at once end the session the same way: its open transaction is gone, what it committed stays.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL

from bench.live_traffic import Traffic
from crm_schema import cli, migrations, transactions
from crm_schema.db import make_engine
from tests import catalog
from tests.conftest import PgServer, new_db_name, seeded_template

PHASE1 = "0003_phase1_schema_structure"
PHASE2 = "0004_phase2_indexes_constraints"
BASELINE = migrations.BASELINE_REVISION
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def at_phase1(pg_server: PgServer) -> Iterator[str]:
    """A template at 0003 holding a small CRM (the fewest rows seed_data makes)."""
    with seeded_template(pg_server, "crm_crash_tmpl", 1e-6, PHASE1) as name:
        yield name


@pytest.fixture
def clone(pg_server: PgServer, at_phase1: str) -> Iterator[Callable[[], URL]]:
    """Fresh copies of the 0003 template, dropped after the test."""
    janitors = []

    def make() -> URL:
        name = new_db_name()
        janitor = pg_server.janitor(name, template_dbname=at_phase1)
        janitor.init()
        janitors.append(janitor)
        return pg_server.url(name)

    yield make
    for janitor in janitors:
        janitor.drop()


def _state(url: URL) -> tuple[dict[str, Any], dict[str, list[str]]]:
    engine = make_engine(url)
    with engine.connect() as connection:
        state = catalog.snapshot(connection), catalog.table_rows(connection)
    engine.dispose()
    return state


def _migrate_0004(url: URL, kill_at: int | None) -> list[str]:
    """Run 0004 on ``url``; with ``kill_at``, terminate its server process just before its
    statement number ``kill_at``. Returns the statements it sent."""
    engine = make_engine(url)
    side = make_engine(url)
    sent: list[str] = []

    def before(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)
        if len(sent) == kill_at:
            pid = conn.connection.dbapi_connection.info.backend_pid
            with side.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})

    event.listen(engine, "before_cursor_execute", before)
    config = migrations.make_config(url)
    config.attributes["connection"] = engine
    try:
        command.upgrade(config, PHASE2)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        engine.dispose()
        side.dispose()
    return sent


@pytest.fixture(scope="module")
def references(pg_server: PgServer, at_phase1: str) -> dict[str, Any]:
    """The catalogs and rows of a clean run: 0004 applied, and rolled back to the baseline;
    and how many statements a clean 0004 sends."""
    name = new_db_name()
    with pg_server.janitor(name, template_dbname=at_phase1):
        url = pg_server.url(name)
        statements = _migrate_0004(url, kill_at=None)
        at_phase2 = _state(url)
        migrations.downgrade(url, BASELINE)
        at_baseline = _state(url)
    return {"statements": statements, PHASE2: at_phase2, BASELINE: at_baseline}


def _same(expected: tuple[Any, Any], actual: tuple[Any, Any], where: str) -> None:
    assert catalog.diff(expected[0], actual[0]) == "", where
    # The change log only grows (nothing writes it before 0005): compare everything else.
    expected[1].pop("change_log", None)
    actual[1].pop("change_log", None)
    assert expected[1] == actual[1], where


@pytest.mark.parametrize("repair", ["upgrade", "rollback"])
def test_a_kill_before_any_statement_of_0004_is_repaired_exactly(
    clone: Callable[[], URL], references: dict[str, Any], repair: str
) -> None:
    statements = references["statements"]
    assert any("CONCURRENTLY" in s for s in statements)  # the non-transactional part is in
    for kill_at in range(1, len(statements) + 1):
        url = clone()
        where = (
            f"killed before statement {kill_at}: {' '.join(statements[kill_at - 1].split())[:90]}"
        )
        try:
            _migrate_0004(url, kill_at)
        except CommandError as stopped:
            message = str(stopped)
        else:  # killed while letting go of its advisory lock: the migration had finished
            assert "pg_advisory_unlock" in statements[kill_at - 1], where
            assert migrations.current_revision(url) == PHASE2, where
            continue
        # One line, naming where it stopped: the revision, or that none had started.
        assert "\n" not in message, where
        assert f"{PHASE2} (upgrade) stopped: lost the connection" in message or (
            message.startswith(("before migrating:", "while preparing the migration:"))
        ), (where, message)
        assert migrations.current_revision(url) in (PHASE1, PHASE2), where
        # The state it stopped in still serves the app (its requests rolled back, so the rows
        # can be compared below).
        assert Traffic(url).every_request_once(keep=False) == {}, where
        if repair == "upgrade":
            migrations.upgrade(url, PHASE2)  # what `crm-schema upgrade` runs
            assert migrations.current_revision(url) == PHASE2, where
            _same(references[PHASE2], _state(url), where)
        else:
            assert cli.main(["rollback", "--yes", "--url", _text(url), "--json"]) == 0, where
            assert migrations.current_revision(url) == BASELINE, where
            _same(references[BASELINE], _state(url), where)


def _text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _upgrade_in_the_background(url: URL, logs: Path, **env: str) -> subprocess.Popen[str]:
    """`crm-schema upgrade` as a DBA's shell runs it: a process of its own, to signal."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crm_schema.cli",
            "upgrade",
            "--url",
            _text(url),
            "--log-dir",
            str(logs),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
    )


def _kill_at_first(statements: list[str], prefix: str) -> int:
    return next(i for i, s in enumerate(statements, 1) if s.lstrip().startswith(prefix))


def test_current_and_preflight_name_a_half_applied_revision(
    clone: Callable[[], URL], references: dict[str, Any], capsys: Any
) -> None:
    url = clone()
    kill_at = _kill_at_first(references["statements"], "CREATE INDEX CONCURRENTLY")
    with pytest.raises(Exception):  # noqa: B017, PT011
        _migrate_0004(url, kill_at)
    engine = make_engine(url)
    with engine.connect() as connection:
        partial = transactions.half_applied(connection)
    engine.dispose()
    assert partial is not None
    assert partial[0] == PHASE2
    assert "public.ensure_activity_log_partitions()" in partial[1]
    assert cli.main(["current", "--url", _text(url)]) == 0
    out = capsys.readouterr().out
    assert PHASE1 in out
    assert f"part of {PHASE2} in place" in out
    cli.main(["preflight", "--url", _text(url)])
    assert f"part of {PHASE2} in place" in capsys.readouterr().out


def test_a_clean_database_is_not_half_applied(clone: Callable[[], URL]) -> None:
    url = clone()
    engine = make_engine(url)
    with engine.connect() as connection:
        assert transactions.half_applied(connection) is None
    engine.dispose()


def _waiting_concurrent_build(engine: Engine) -> int | None:
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'"
            )
        ).scalar()


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_stopping_a_waiting_index_build_from_the_shell(
    clone: Callable[[], URL], tmp_path: Path, how: str
) -> None:
    """A concurrent index build waits for older transactions (here: an open snapshot, as
    pg_dump holds). Ctrl-C stops it, drops the half-built index and says where it stopped;
    after a SIGKILL, upgrade and rollback both still work."""
    url = clone()
    engine = make_engine(url)
    snapshot = engine.connect()
    snapshot.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    snapshot.execute(text("SELECT 1"))
    run = _upgrade_in_the_background(url, tmp_path, CRM_LOCK_TIMEOUT="5min")
    try:
        deadline = time.monotonic() + 120  # a hang guard, not a measurement
        while _waiting_concurrent_build(engine) is None:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the index build never started waiting"
            time.sleep(0.1)
        run.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        out, err = run.communicate(timeout=60)
    finally:
        snapshot.rollback()
        snapshot.close()
        if run.poll() is None:
            run.kill()
    with engine.connect() as connection:
        invalid = connection.execute(
            text("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
        ).scalar()
    engine.dispose()
    if how == "ctrl-c":
        lines = [line for line in err.splitlines() if line.strip()]
        assert run.returncode == 2, err
        assert len(lines) == 1, err
        assert f"interrupted: {PHASE2} (upgrade) stopped while running: CREATE INDEX" in lines[0]
        assert "dropped the half-built index" in lines[0]
        assert f"part of {PHASE2} in place" in lines[0]
        assert "Traceback" not in out + err
        assert invalid == 0
    assert migrations.current_revision(url) == PHASE1
    assert cli.main(
        ["upgrade", "--to", PHASE2, "--url", _text(url), "--json", "--log-dir", str(tmp_path)]
    ) in (0, 1)
    assert migrations.current_revision(url) == PHASE2
    assert cli.main(["rollback", "--yes", "--url", _text(url), "--json"]) == 0


def test_an_open_snapshot_fails_the_index_build_in_one_line_naming_it(
    clone: Callable[[], URL], tmp_path: Path, capsys: Any
) -> None:
    """A long report holds a REPEATABLE READ snapshot (as pg_dump does): a concurrent index
    build waits for it, then gives up, naming the index and the session it waited for, and
    drops the index it half built. What committed stays, and says so; the run can simply be
    repeated later. (pg_dump also holds a share lock on every table: then the revision's
    locks are what it cannot get, and the message names that instead.)"""
    url = clone()
    engine = make_engine(url)
    dump = engine.connect()
    dump.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    dump.execute(text("SET application_name = 'year-end report'"))
    dump.execute(text("SELECT count(*) FROM pg_catalog.pg_class"))
    pid = dump.execute(text("SELECT pg_backend_pid()")).scalar()
    try:
        os.environ["CRM_LOCK_TIMEOUT"] = "1s"
        code = cli.main(["upgrade", "--url", _text(url), "--log-dir", str(tmp_path)])
    finally:
        del os.environ["CRM_LOCK_TIMEOUT"]
        dump.rollback()
        dump.close()
    line = capsys.readouterr().err.strip()
    assert code == 2
    assert line.startswith(f"crm-schema: error: {PHASE2} (upgrade) stopped: building index ")
    assert "waited lock_timeout for older transactions to finish" in line
    assert f"pid {pid} (year-end report, idle in transaction, transaction open" in line
    assert "dropped the half-built index" in line
    assert f"the database is at {PHASE1} with part of {PHASE2} in place" in line
    assert "rolled back" not in line
    assert migrations.current_revision(url) == PHASE1
    assert cli.main(["upgrade", "--url", _text(url), "--log-dir", str(tmp_path)]) in (0, 1)
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid")).scalar()
            == 0
        )
        assert transactions.half_applied(connection) is None
    engine.dispose()


def test_ctrl_c_while_retrying_for_locks_stops_in_one_line(
    clone: Callable[[], URL], tmp_path: Path
) -> None:
    """Interrupted between lock attempts (or in one): one line, nothing half done."""
    url = clone()
    engine = make_engine(url)
    blocker = engine.connect()
    blocker.execute(text("LOCK TABLE public.orders IN ROW EXCLUSIVE MODE"))
    run = _upgrade_in_the_background(url, tmp_path)
    try:
        deadline = time.monotonic() + 120  # a hang guard, not a measurement
        with engine.connect() as watcher:
            while not watcher.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = "
                    "current_database() AND query LIKE 'LOCK TABLE%' AND pid <> :me)"
                ),
                {"me": blocker.execute(text("SELECT pg_backend_pid()")).scalar()},
            ).scalar():
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "the upgrade never tried to lock"
                time.sleep(0.05)
                watcher.rollback()
        time.sleep(0.3)  # let it fail an attempt or two: the interrupt may land in a pause
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        blocker.rollback()
        blocker.close()
        if run.poll() is None:
            run.kill()
    engine.dispose()
    lines = [line for line in err.splitlines() if line.strip()]
    assert run.returncode == 2, err
    assert len(lines) == 1, err
    assert f"interrupted: {PHASE2} (upgrade) stopped" in lines[0]
    assert f"the database is at {PHASE1};" in lines[0]
    assert migrations.current_revision(url) == PHASE1
