"""Plain ``alembic`` as a DBA runs it: adopting an unstamped baseline, and writing a revision.

``crm-schema upgrade`` refuses an unstamped baseline itself; these prove ``alembic upgrade``
refuses it the same way (one line, nothing written, not even ``alembic_version``), that
``alembic stamp`` and ``migrations.stamp()`` still adopt it, and that ``alembic revision``
formats the new file with ruff without ruff on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from crm_schema.runbook.baseline import UNSTAMPED_ADVICE
from tests import catalog, sample_data
from tests.conftest import REPO
from tests.test_cli import alembic, url_text

BASELINE = migrations.BASELINE_REVISION


@pytest.fixture
def unstamped(empty_db_url: URL, make_engine: Any) -> Engine:
    """The production case before adoption: the baseline tables with data, no alembic_version."""
    command.upgrade(migrations.make_config(empty_db_url), BASELINE)
    engine: Engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        sample_data.load(connection)
        connection.execute(text("DROP TABLE alembic_version"))
    return engine


def _state(engine: Engine) -> tuple[Any, Any]:
    with engine.connect() as connection:
        return catalog.snapshot(connection), catalog.table_rows(connection)


def test_alembic_upgrade_refuses_an_unstamped_baseline(unstamped: Engine) -> None:
    before = _state(unstamped)
    result = alembic("upgrade", "head", DATABASE_URL=url_text(unstamped.url))
    assert result.returncode != 0
    # Alembic logs a CommandError as one line: the same advice crm-schema upgrade gives.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(UNSTAMPED_ADVICE)
    after = _state(unstamped)
    assert catalog.diff(before[0], after[0]) == ""
    assert after[1] == before[1]
    with unstamped.connect() as connection:
        assert connection.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None


def test_alembic_stamp_still_adopts_the_baseline(unstamped: Engine) -> None:
    env = {"DATABASE_URL": url_text(unstamped.url)}
    stamped = alembic("stamp", BASELINE, **env)
    assert stamped.returncode == 0, stamped.stderr
    assert migrations.current_revision(unstamped.url) == BASELINE
    upgraded = alembic("upgrade", "head", **env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert migrations.current_revision(unstamped.url) == migrations.revision_ids()[-1]


def test_migrations_stamp_adopts_from_python(unstamped: Engine) -> None:
    with pytest.raises(Exception, match="adopt them with `alembic stamp"):
        migrations.upgrade(unstamped.url)
    migrations.stamp(unstamped.url)
    assert migrations.current_revision(unstamped.url) == BASELINE


def test_new_revision_is_formatted_without_ruff_on_path(tmp_path: Path) -> None:
    shutil.copytree(REPO / "alembic", tmp_path / "alembic")
    shutil.copy(REPO / "alembic.ini", tmp_path / "alembic.ini")
    # Only the interpreter's own folder would have ruff; leave it off PATH.
    folders = os.environ["PATH"].split(os.pathsep)
    path = os.pathsep.join(p for p in folders if p and not (Path(p) / "ruff").exists())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "revision",
            "-m",
            "add a thing",
            "--rev-id",
            "0099_thing",
        ],
        cwd=tmp_path,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = tmp_path / "alembic" / "versions" / "0099_thing.py"
    assert "revision: str = '0099_thing'" not in written.read_text()  # ruff's quotes, not repr's
    assert 'revision: str = "0099_thing"' in written.read_text()


def test_alembic_command_stamp_adopts_from_python_too(unstamped: Engine) -> None:
    """alembic.command.stamp(), called directly, is a stamp like any other."""
    command.stamp(migrations.make_config(unstamped.url), BASELINE)
    assert migrations.current_revision(unstamped.url) == BASELINE
