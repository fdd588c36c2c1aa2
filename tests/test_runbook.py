"""The runbook commands driven as a DBA would run them: pre-flight, upgrade with its migration
log, verify, rollback, the offline SQL files, partition maintenance and monitoring, including
their failure paths (exit 1: a check failed or a refusal; exit 2: could not run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from tests import catalog, sample_data
from tests.test_cli import crm, one_error_line, psql_file, url_text

HEAD = migrations.revisions_in_order()[-1].revision
BASELINE = migrations.BASELINE_REVISION


@pytest.fixture
def baseline(empty_db_url: URL, make_engine: Any) -> Engine:
    """A database at the baseline revision with the sample CRM (the production case)."""
    command.upgrade(migrations.make_config(empty_db_url), BASELINE)
    engine: Engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        sample_data.load(connection)
    return engine


def report(*args: str, **env: str) -> tuple[int, dict[str, Any]]:
    result = crm(*args, "--json", **env)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in data["checks"]}


def check(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in data["checks"] if c["name"] == name)


# --- preflight --------------------------------------------------------------------------


def test_preflight_passes_on_the_baseline(baseline: Engine) -> None:
    code, data = report("preflight", "--url", url_text(baseline.url), "--backup-confirmed")
    assert code == 0
    found = statuses(data)
    assert found["PostgreSQL version"] == "PASS"
    assert found["admin user stokes@cakeoklahoma.com"] == "PASS"
    assert all(found[f"baseline: {t}"] == "PASS" for t in ("profiles", "orders", "tasks"))
    assert found["backup"] == "PASS"
    assert check(data, "Alembic revision")["actual"] == BASELINE


def test_preflight_on_an_unmanaged_baseline_says_to_stamp(baseline: Engine) -> None:
    with baseline.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    code, data = report("preflight", "--url", url_text(baseline.url))
    assert code == 0
    assert statuses(data)["backup"] == "WARN"
    assert any("alembic stamp 0002_crm_baseline" in note for note in data["notes"])


def test_preflight_names_drift_precisely_and_changes_nothing(baseline: Engine) -> None:
    with baseline.begin() as connection:
        connection.execute(
            text(
                "ALTER TABLE dispensary_profiles ALTER COLUMN license_number TYPE varchar(20);"
                "ALTER TABLE orders DROP COLUMN notes;"
                "ALTER TABLE tasks ADD COLUMN color text;"
                "ALTER TABLE products ALTER COLUMN sku DROP NOT NULL;"
            )
        )
    with baseline.connect() as connection:
        before = catalog.snapshot(connection)
    code, data = report("preflight", "--url", url_text(baseline.url))
    assert code == 1
    assert check(data, "baseline: dispensary_profiles")["actual"] == (
        "license_number is character varying(20), expected text"
    )
    assert check(data, "baseline: orders")["actual"] == "column notes is missing"
    assert check(data, "baseline: tasks")["actual"] == "unexpected column color"
    assert check(data, "baseline: products")["actual"] == "sku is NULL, expected NOT NULL"
    assert statuses(data)["baseline: profiles"] == "PASS"
    with baseline.connect() as connection:
        assert catalog.diff(before, catalog.snapshot(connection)) == ""


def test_preflight_missing_or_demoted_admin(baseline: Engine) -> None:
    url = url_text(baseline.url)
    code, data = report("preflight", "--url", url, "--admin-email", "nobody@example.com")
    assert code == 1
    assert check(data, "admin user nobody@example.com")["actual"] == "missing"
    code, data = report("preflight", "--url", url, "--admin-email", "agent.a@cakeoklahoma.com")
    assert code == 1
    assert check(data, "admin user agent.a@cakeoklahoma.com")["actual"] == "role agent"


def test_preflight_refuses_a_database_that_is_not_the_crm(
    empty_db_url: URL, make_engine: Any
) -> None:
    with make_engine(empty_db_url).begin() as connection:
        connection.execute(text("CREATE TABLE invoices (id int PRIMARY KEY)"))
    code, data = report("preflight", "--url", url_text(empty_db_url))
    assert code == 1
    assert check(data, "empty or CRM database")["status"] == "FAIL"


def test_preflight_unknown_revision(baseline: Engine) -> None:
    with baseline.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    code, data = report("preflight", "--url", url_text(baseline.url))
    assert code == 1
    assert check(data, "Alembic revision")["status"] == "FAIL"
    line = one_error_line(crm("upgrade", "--url", url_text(baseline.url)))
    assert "0099_from_the_future" in line
    for command_ in ("verify", "stats", "rollback"):
        line = one_error_line(crm(command_, "--url", url_text(baseline.url)))
        assert "at 0099_from_the_future, not a revision of this package" in line


def test_preflight_on_an_empty_database(empty_db_url: URL) -> None:
    code, data = report("preflight", "--url", url_text(empty_db_url))
    assert code == 0
    assert check(data, "empty or CRM database")["status"] == "PASS"


# --- upgrade, verify --------------------------------------------------------------------


def _refused_upgrade(engine: Engine, tmp_path: Path, *args: str) -> str:
    """Run an upgrade that must be refused; prove it changed nothing and logged nothing."""
    with engine.connect() as connection:
        before = catalog.snapshot(connection), catalog.table_rows(connection)
    line = one_error_line(
        crm("upgrade", "--url", url_text(engine.url), "--log-dir", str(tmp_path), *args)
    )
    with engine.connect() as connection:
        assert catalog.diff(before[0], catalog.snapshot(connection)) == ""
        assert catalog.table_rows(connection) == before[1]
    assert list(tmp_path.iterdir()) == []
    return line


def test_upgrade_refuses_an_unstamped_baseline(baseline: Engine, tmp_path: Path) -> None:
    # The production case before adoption: revision 0001 would run, then 0002 would fail.
    with baseline.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    line = _refused_upgrade(baseline, tmp_path)
    assert "alembic stamp 0002_crm_baseline" in line


def test_upgrade_refuses_a_database_that_is_not_the_crm(
    empty_db_url: URL, make_engine: Any, tmp_path: Path
) -> None:
    engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE invoices (id int PRIMARY KEY)"))
    line = _refused_upgrade(engine, tmp_path)
    assert "not empty and not the CRM (1 table(s) in public, e.g. invoices)" in line


def test_upgrade_refuses_an_unknown_target(baseline: Engine, tmp_path: Path) -> None:
    line = _refused_upgrade(baseline, tmp_path, "--to", "0042_nope")
    assert "unknown target revision '0042_nope'" in line


def test_unwritable_output_folders_are_refused_up_front(baseline: Engine, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    unused = tmp_path / "unused"
    unused.mkdir()
    line = _refused_upgrade(baseline, unused, "--log-dir", str(not_a_folder / "x"))
    assert line.endswith(f"cannot write {not_a_folder / 'x'}: Not a directory")
    line = one_error_line(crm("sql", "--out", str(not_a_folder / "sql")))
    assert line.endswith(f"cannot write {not_a_folder / 'sql'}: Not a directory")


def test_upgrade_json_lists_the_revisions_and_the_log(baseline: Engine, tmp_path: Path) -> None:
    code, data = report("upgrade", "--url", url_text(baseline.url), "--log-dir", str(tmp_path))
    assert code == 0
    # One entry per commit: revisions that commit together are one step, "A + B".
    assert [p["revision"] for p in data["tables"]["Revisions"]] == [
        " + ".join(s.revision for s in batch) for batch in migrations.commits()[2:]
    ]
    assert data["notes"] == [f"Migration log written to {next(tmp_path.glob('*.txt'))}"]


def test_commands_that_need_the_enhanced_schema_say_so(baseline: Engine) -> None:
    url = url_text(baseline.url)
    for args in (("stats",), ("partitions", "ensure"), ("partitions", "archive")):
        line = one_error_line(crm(*args, "--url", url))
        assert f"at {BASELINE}: `crm-schema {' '.join(args)}` needs" in line
        assert line.endswith("run `crm-schema upgrade` first")


def test_upgrade_fills_in_the_migration_log(baseline: Engine, tmp_path: Path) -> None:
    result = crm(
        "upgrade",
        "--url",
        url_text(baseline.url),
        "--log-dir",
        str(tmp_path),
        "--notes",
        "Q4 release",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    steps = len(migrations.commits()) - 2
    assert f"[{steps}/{steps}] {HEAD}" in result.stdout
    text_log = next(tmp_path.glob("migration-*.txt")).read_text()
    assert "Verification Status: [X] PASS [ ] FAIL" in text_log
    assert "Rollback Required: [ ] YES [X] NO" in text_log
    assert "Notes: Q4 release" in text_log
    with baseline.connect() as connection:
        row = connection.execute(
            text(
                "SELECT from_revision, to_revision, verification_status, notes, "
                "jsonb_array_length(phases), finished_at >= started_at FROM migration_log"
            )
        ).one()
    assert tuple(row) == (BASELINE, HEAD, "PASS", "Q4 release", steps, True)


def test_migration_log_is_for_admins_only(baseline: Engine) -> None:
    command.upgrade(migrations.make_config(baseline.url), "head")
    with baseline.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO migration_log (migration_date, started_at, executed_by, "
                "verification_status) VALUES (current_date, now(), 'dba', 'PASS')"
            )
        )
    for who, expected in ((sample_data.ADMIN, 1), (sample_data.MANAGER, 0)):
        with baseline.begin() as connection:
            connection.execute(
                text(
                    "SELECT set_config('request.jwt.claims', :c, true), "
                    "set_config('role', 'authenticated', true)"
                ),
                {"c": json.dumps({"sub": str(who), "role": "authenticated"})},
            )
            assert connection.execute(text("SELECT count(*) FROM migration_log")).scalar() == (
                expected
            )


def test_verify_passes_then_catches_a_table_without_rls(baseline: Engine) -> None:
    command.upgrade(migrations.make_config(baseline.url), "head")
    with baseline.begin() as connection:
        connection.execute(
            text("SELECT log_user_activity(:a, 'login', 'system', NULL, '{}')"),
            {"a": sample_data.ADMIN},
        )
        connection.execute(text("ANALYZE user_activity_log"))
    code, data = report("verify", "--url", url_text(baseline.url))
    assert code == 0, [c for c in data["checks"] if c["status"] == "FAIL"]
    usage = data["tables"]["Index usage (seed query)"]  # the seed's pg_stats query, verbatim
    assert {(r["tablename"], r["attname"]) for r in usage} >= {("user_activity_log", "user_id")}
    with baseline.begin() as connection:
        connection.execute(text("ALTER TABLE orders DISABLE ROW LEVEL SECURITY"))
    code, data = report("verify", "--url", url_text(baseline.url))
    assert code == 1
    assert check(data, "RLS enabled on every table (partitions too)")["actual"] == "orders"


def test_verify_leaves_no_trace(baseline: Engine) -> None:
    command.upgrade(migrations.make_config(baseline.url), "head")
    counts = (
        "SELECT (SELECT count(*) FROM user_activity_log), (SELECT login_count FROM "
        "profiles WHERE email = 'stokes@cakeoklahoma.com')"
    )
    with baseline.connect() as connection:
        before = tuple(connection.execute(text(counts)).one())
    assert report("verify", "--url", url_text(baseline.url))[0] == 0
    with baseline.connect() as connection:
        assert tuple(connection.execute(text(counts)).one()) == before


def test_verify_on_a_baseline_database_checks_the_baseline(baseline: Engine) -> None:
    # Verify checks what the current revision should have (tests/test_runbook_exit_codes.py).
    code, data = report("verify", "--url", url_text(baseline.url))
    assert code == 0
    assert check(data, "Alembic revision")["actual"] == BASELINE
    assert check(data, "Alembic revision")["detail"] == f"head is {HEAD}"


# --- rollback ---------------------------------------------------------------------------


def test_rollback_refuses_to_discard_data_without_yes(baseline: Engine) -> None:
    url = url_text(baseline.url)
    with baseline.connect() as connection:
        rows_before = catalog.table_rows(connection)
    command.upgrade(migrations.make_config(baseline.url), "head")
    with baseline.begin() as connection:
        connection.execute(
            text("UPDATE orders SET deleted_at = now() WHERE id = :o"), {"o": sample_data.ORDER_B}
        )
        connection.execute(
            text(
                "INSERT INTO user_permissions (user_id, permission, resource) "
                "VALUES (:a, 'export', 'report')"
            ),
            {"a": sample_data.AGENT_A},
        )
    refused = crm("rollback", "--url", url)
    assert refused.returncode == 1
    assert "1  soft-deleted orders" in refused.stderr
    assert "1  user permission overrides" in refused.stderr
    code, data = report("rollback", "--url", url)
    assert code == 1
    assert check(data, "would discard soft-deleted orders")["actual"] == "1"
    assert check(data, "would discard user permission overrides")["actual"] == "1"
    assert migrations.current_revision(baseline.url) == HEAD
    code, data = report("rollback", "--url", url, "--yes")
    assert code == 0
    assert statuses(data) == {
        "seed: new tables removed": "PASS",
        "seed: new profile columns removed": "PASS",
        "pg_cron jobs removed": "INFO",
    }
    assert check(data, "pg_cron jobs removed")["actual"] == "none scheduled here"
    assert migrations.current_revision(baseline.url) == BASELINE
    with baseline.connect() as connection:
        after = catalog.table_rows(connection)
    changed = {t for t in rows_before if rows_before[t] != after[t]}
    assert changed == {"orders"}  # the soft-deleted order's updated_at: a real edit
    differing = set(rows_before["orders"]) ^ set(after["orders"])
    assert all(str(sample_data.ORDER_B) in row for row in differing)


def test_rollback_at_the_baseline_is_a_no_op(baseline: Engine) -> None:
    result = crm("rollback", "--url", url_text(baseline.url))
    assert result.returncode == 0
    assert "nothing to roll back" in result.stdout
    code, data = report("rollback", "--url", url_text(baseline.url))
    assert (code, data["notes"]) == (0, [f"Already at {BASELINE}: nothing to roll back"])


# --- offline SQL ------------------------------------------------------------------------


def test_sql_files_upgrade_and_roll_back_with_psql(
    baseline: Engine, db_url: URL, make_engine: Any, tmp_path: Path
) -> None:
    code, data = report("sql", "--out", str(tmp_path))
    assert code == 0
    upgrade_sql = tmp_path / "enhanced-schema-migration.sql"
    rollback_sql = tmp_path / "rollback-enhanced-schema.sql"
    assert data["tables"]["Written"] == [{"file": str(upgrade_sql)}, {"file": str(rollback_sql)}]
    with baseline.connect() as connection:
        at_baseline = catalog.rollback_snapshot(connection)
    applied = psql_file(baseline.url, upgrade_sql)
    assert applied.returncode == 0, applied.stderr
    with baseline.connect() as connection, make_engine(db_url).connect() as head:
        assert catalog.diff(catalog.snapshot(head), catalog.snapshot(connection)) == ""
    assert migrations.current_revision(baseline.url) == HEAD
    rolled = psql_file(baseline.url, rollback_sql)
    assert rolled.returncode == 0, rolled.stderr
    with baseline.connect() as connection:
        assert catalog.diff(at_baseline, catalog.rollback_snapshot(connection)) == ""
    assert migrations.current_revision(baseline.url) == BASELINE


# --- partitions, stats --------------------------------------------------------------------


def test_partitions_ensure_and_archive(db_url: URL, make_engine: Any) -> None:
    url = url_text(db_url)
    code, data = report("partitions", "ensure", "--months-ahead", "14", "--url", url)
    assert code == 0
    assert len(data["tables"]["Created"]) == 3
    code, data = report("partitions", "ensure", "--months-ahead", "14", "--url", url)
    assert data["tables"]["Created"] == []  # idempotent
    with make_engine(db_url).begin() as connection:
        connection.execute(
            text(
                "SELECT public.ensure_activity_log_partitions(1, "
                "(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '6 months')::date)"
            )
        )
    code, data = report("partitions", "archive", "--older-than", "90d", "--url", url)
    assert code == 0
    assert [row["action"] for row in data["tables"]["Partitions"]] == ["archived", "archived"]


def test_partitions_schedule_prints_pg_cron_sql(db_url: URL) -> None:
    printed = crm("partitions", "schedule")
    assert printed.returncode == 0
    assert "cron.schedule('crm-activity-partitions-ensure'" in printed.stdout
    code, data = report("partitions", "schedule")
    assert (code, data["notes"]) == (0, [printed.stdout])
    assert "not installed" in one_error_line(
        crm("partitions", "schedule", "--apply", "--url", url_text(db_url))
    )


def test_bad_partition_age_is_one_line(db_url: URL) -> None:
    line = one_error_line(
        crm("partitions", "archive", "--older-than", "soon", "--url", url_text(db_url))
    )
    assert "invalid input syntax for type interval" in line
    assert "migration" not in line  # no migration ran, so none was rolled back


def test_stats_runs_the_seed_monitoring_queries(baseline: Engine) -> None:
    command.upgrade(migrations.make_config(baseline.url), "head")
    code, data = report("stats", "--url", url_text(baseline.url))
    assert code == 0
    changes = {
        row["table_name"]: row["change_count"] for row in data["tables"]["Changes per table"]
    }
    assert changes.get("role_permissions", 0) > 0  # the defaults' installation is audited
    partitions = data["tables"]["Activity log size per partition"]
    assert {"schemaname", "tablename", "size"} <= set(partitions[0])
    assert {r["who"] for r in data["tables"]["Permissions"]} >= {"admin", "manager", "agent"}
    text_out = crm("stats", "--url", url_text(baseline.url))
    assert "Changes per table" in text_out.stdout
    assert "\033[" not in text_out.stdout  # plain text when piped
