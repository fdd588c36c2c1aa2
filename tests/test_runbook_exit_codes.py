"""Exit codes a deploy pipeline relies on: a healthy database exits 0 at every revision.

``crm-schema upgrade`` on a fresh database (no users yet, so no admin), to an earlier revision,
or from part-way; ``verify`` at each revision; ``rollback`` when the only rows are the ones the
migration and the runbook wrote; and ``verify`` on an unmigrated database (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from tests import sample_data
from tests.test_cli import crm, one_error_line, url_text

IDS = migrations.revision_ids()
HEAD = IDS[-1]
ADMIN_CHECK = "seed: stokes@cakeoklahoma.com may read profiles"


def _json(*args: str) -> tuple[int, dict[str, Any]]:
    result = crm(*args, "--json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def _checks(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in data["checks"]}


def test_upgrade_of_a_fresh_database_exits_0_and_skips_the_missing_admin(
    empty_db_url: URL, tmp_path: Path
) -> None:
    code, data = _json("upgrade", "--url", url_text(empty_db_url), "--log-dir", str(tmp_path))
    checks = _checks(data)
    assert code == 0, [c for c in data["checks"] if c["status"] == "FAIL"]
    assert checks[ADMIN_CHECK]["status"] == "SKIP"
    assert "--admin-email" in checks[ADMIN_CHECK]["detail"]
    log = next(tmp_path.glob("migration-*.txt")).read_text()
    assert "Rollback Required: [ ] YES [X] NO" in log


def test_an_admin_asked_for_by_name_must_exist(empty_db_url: URL, tmp_path: Path) -> None:
    code, data = _json(
        "upgrade", "--url", url_text(empty_db_url), "--log-dir", str(tmp_path),
        "--admin-email", "stokes@cakeoklahoma.com",
    )  # fmt: skip
    assert code == 1
    assert _checks(data)[ADMIN_CHECK]["status"] == "FAIL"


def test_upgrade_to_each_revision_then_verify_exit_0(empty_db_url: URL, tmp_path: Path) -> None:
    url = url_text(empty_db_url)
    # Every revision a run can stop at (0006 commits only together with 0007).
    for revision in (batch[-1].revision for batch in migrations.commits()):
        code, data = _json("upgrade", "--url", url, "--to", revision, "--log-dir", str(tmp_path))
        assert code == 0, (revision, [c for c in data["checks"] if c["status"] == "FAIL"])
        assert _checks(data)["Alembic revision"]["actual"] == revision
        code, data = _json("verify", "--url", url)
        assert code == 0, (revision, [c for c in data["checks"] if c["status"] == "FAIL"])
        ran = set(_checks(data))
        # What the revision built is checked, nothing it has not built yet.
        assert ("seed: new tables" in ran) == (IDS.index(revision) >= 2)
        assert ("default role permissions" in ran) == (IDS.index(revision) >= 6)


def test_verify_still_fails_what_the_current_revision_should_have(
    empty_db_url: URL, make_engine: Any
) -> None:
    command.upgrade(migrations.make_config(empty_db_url), "0005_phase3_functions_triggers")
    engine: Engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER orders_track_edit ON orders"))
        connection.execute(text("ALTER TABLE products DISABLE TRIGGER products_log_insert"))
        # Fires after edit tracking has logged the row, and could change what is written.
        connection.execute(
            text(
                "CREATE TRIGGER tasks_zz_late BEFORE UPDATE ON tasks FOR EACH ROW "
                "EXECUTE FUNCTION set_updated_at()"
            )
        )
    code, data = _json("verify", "--url", url_text(empty_db_url))
    assert code == 1
    checks = _checks(data)
    assert checks["change-log triggers on every tracked table"]["actual"] == "orders, products"
    assert checks["edit tracking is the last trigger before an update"]["actual"] == (
        "tasks: tasks_zz_late"
    )


def test_verify_on_an_unmigrated_database_exits_2(empty_db_url: URL) -> None:
    line = one_error_line(crm("verify", "--url", url_text(empty_db_url)))
    assert "not migrated" in line
    assert line.endswith("run `crm-schema upgrade` first")


def test_rollback_ignores_rows_the_migration_and_runbook_wrote(
    empty_db_url: URL, make_engine: Any, tmp_path: Path
) -> None:
    url = url_text(empty_db_url)
    # The default role permissions (and their change-log rows) and a migration_log row.
    assert _json("upgrade", "--url", url, "--log-dir", str(tmp_path))[0] == 0
    result = crm("rollback", "--url", url)
    assert result.returncode == 0, result.stderr
    assert migrations.current_revision(empty_db_url) == migrations.BASELINE_REVISION


def test_rollback_still_counts_a_users_change(empty_db_url: URL, make_engine: Any) -> None:
    command.upgrade(migrations.make_config(empty_db_url), migrations.BASELINE_REVISION)
    engine: Engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        sample_data.load(connection)
    command.upgrade(migrations.make_config(empty_db_url), "head")
    with engine.begin() as connection:  # an admin takes one default away from agents
        connection.execute(
            text(
                "DELETE FROM role_permissions WHERE id = "
                "(SELECT id FROM role_permissions WHERE role = 'agent' ORDER BY id LIMIT 1)"
            )
        )
    code, data = _json("rollback", "--url", url_text(empty_db_url))
    assert code == 1
    assert _checks(data)["would discard change log rows"]["actual"] == "1"
    assert migrations.current_revision(empty_db_url) == HEAD
