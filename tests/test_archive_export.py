"""``crm-schema partitions archive --export DIR`` and ``partitions restore``: old activity
months leave the database as verified files (rows and manifest) and come back identical."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from crm_schema import __version__, migrations
from tests.test_cli import crm, one_error_line, url_text

HEAD = migrations.revisions_in_order()[-1].revision
OLD = "(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '{n} months')"
# A month's rows, with the values CSV must carry exactly: quotes, commas, newlines, unicode,
# NULLs, jsonb, inet.
ROWS = """
INSERT INTO user_activity_log
    (user_id, activity, resource, resource_id, metadata, ip_address, user_agent, created_at)
SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE gen_random_uuid() END,
       (ARRAY['login', 'view', 'export']::activity_type[])[1 + g % 3],
       CASE WHEN g % 2 = 0 THEN 'order'::resource_type END,
       CASE WHEN g % 2 = 0 THEN gen_random_uuid() END,
       jsonb_build_object('n', g, 'note', E'line one\\nline "two", three', 'é', g % 2 = 0),
       CASE WHEN g % 4 = 0 THEN NULL ELSE ('10.0.0.' || g % 250)::inet END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE E'Mozilla/5.0, "quoted"\\n' || g END,
       ({month} AT TIME ZONE 'UTC') + g * interval '37 minutes'
  FROM generate_series(1, :n) AS g
"""
FINGERPRINT = """
SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.created_at, t.id), ''))
  FROM user_activity_log AS t WHERE t.created_at < now() - interval '90 days'
"""


def q(connection: Connection, sql: str, **params: Any) -> Any:
    return connection.execute(text(sql), params).scalar()


def month_name(connection: Connection, months_ago: int) -> str:
    name: str = q(
        connection, f"SELECT 'user_activity_log_' || to_char({OLD}, 'YYYY_MM')".format(n=months_ago)
    )
    return name


@pytest.fixture
def old_months(engine: Engine) -> Engine:
    """Partitions 8 and 7 months back holding 120 and 80 rows, and 5 rows from three years
    ago that wait in the catch-all partition (their month has none)."""
    with engine.begin() as connection:
        connection.execute(
            text(f"SELECT public.ensure_activity_log_partitions(1, ({OLD.format(n=8)})::date)")
        )
        connection.execute(text(ROWS.format(month=OLD.format(n=8))), {"n": 120})
        connection.execute(text(ROWS.format(month=OLD.format(n=7))), {"n": 80})
        connection.execute(text(ROWS.format(month=OLD.format(n=36))), {"n": 5})
    return engine


def fingerprint(engine: Engine) -> tuple[int, str]:
    with engine.connect() as connection:
        count, digest = connection.execute(text(FINGERPRINT)).one()
        return int(count), str(digest)


def partition_exists(engine: Engine, name: str) -> bool:
    with engine.connect() as connection:
        return q(connection, "SELECT to_regclass(:n) IS NOT NULL", n=f"public.{name}") is True


def cli(*args: str, **env: str) -> tuple[int, dict[str, Any]]:
    result = crm(*args, "--json", **env)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in data["checks"]}


def test_export_drop_restore_round_trip_gives_identical_rows(
    old_months: Engine, tmp_path: Path
) -> None:
    url = url_text(old_months.url)
    with old_months.connect() as connection:
        months = [month_name(connection, 8), month_name(connection, 7)]
    before = fingerprint(old_months)
    assert before[0] == 205

    code, data = cli(
        "partitions", "archive", "--older-than", "90d", "--export", str(tmp_path), "--url", url
    )
    assert code == 0, data
    assert [r["partition"] for r in data["tables"]["Partitions"]] == months
    assert [r["action"] for r in data["tables"]["Partitions"]] == [
        "exported 120 rows, verified; detached and dropped",
        "exported 80 rows, verified; detached and dropped",
    ]
    for name, rows in zip(months, (120, 80), strict=True):
        assert not partition_exists(old_months, name)
        manifest = json.loads((tmp_path / f"{name}.json").read_text())
        data_file = tmp_path / manifest["file"]
        assert manifest["row_count"] == rows
        assert manifest["sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
        assert (manifest["revision"], manifest["package_version"]) == (HEAD, __version__)
        assert manifest["month"] == name[-7:].replace("_", "-")
        assert manifest["first_created_at"] < manifest["last_created_at"]
        with gzip.open(data_file, "rt") as rows_file:
            header = rows_file.readline().strip()
        assert header == ",".join(manifest["columns"])
    # Only the catch-all's rows are left: it is never archived.
    assert fingerprint(old_months)[0] == 5

    for name in months:
        code, data = cli("partitions", "restore", str(tmp_path / f"{name}.json"), "--url", url)
        assert code == 0, data
        assert partition_exists(old_months, name)
    assert fingerprint(old_months) == before

    # A second restore of the same month is refused and writes nothing.
    code, data = cli("partitions", "restore", str(tmp_path / f"{months[0]}.csv.gz"), "--url", url)
    assert code == 1
    failed = next(c for c in data["checks"] if c["status"] == "FAIL")
    assert failed["detail"].startswith("already restored: all 120 rows")
    assert fingerprint(old_months) == before


def test_restored_partition_is_closed_to_the_api(old_months: Engine, tmp_path: Path) -> None:
    url = url_text(old_months.url)
    with old_months.connect() as connection:
        name = month_name(connection, 8)
    cli("partitions", "archive", "--export", str(tmp_path), "--url", url)
    cli("partitions", "restore", str(tmp_path / f"{name}.json"), "--url", url)
    with old_months.connect() as connection:
        row = connection.execute(
            text(
                "SELECT c.relrowsecurity, "
                "has_table_privilege('authenticated', c.oid, 'SELECT'), "
                "has_table_privilege('anon', c.oid, 'SELECT'), "
                "EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname) "
                "FROM pg_class c WHERE c.oid = CAST(:n AS regclass)"
            ),
            {"n": f"public.{name}"},
        ).one()
    assert tuple(row) == (True, False, False, True)


def test_dry_run_lists_and_changes_nothing(old_months: Engine, tmp_path: Path) -> None:
    url = url_text(old_months.url)
    with old_months.connect() as connection:
        name = month_name(connection, 8)
    out = tmp_path / "out"
    code, data = cli("partitions", "archive", "--export", str(out), "--dry-run", "--url", url)
    assert code == 0
    assert data["tables"]["Partitions"][0] == {
        "partition": name,
        "action": "would export 120 rows; would detach and drop",
    }
    assert not out.exists()
    code, data = cli("partitions", "archive", "--dry-run", "--drop", "--url", url)
    assert [r["action"] for r in data["tables"]["Partitions"]] == ["would drop"] * 2
    assert partition_exists(old_months, name)
    assert fingerprint(old_months)[0] == 205


def test_a_failed_drop_leaves_the_month_and_a_rerun_finishes_it(
    old_months: Engine, tmp_path: Path
) -> None:
    url = url_text(old_months.url)
    with old_months.connect() as connection:
        name, later = month_name(connection, 8), month_name(connection, 7)
    before = fingerprint(old_months)
    with old_months.connect() as reader:
        # A long-running reader: detaching would have to queue behind it.
        reader.execute(text("SELECT count(*) FROM user_activity_log"))
        code, data = cli(
            "partitions",
            "archive",
            "--export",
            str(tmp_path),
            "--url",
            url,
            CRM_LOCK_TIMEOUT="100ms",
        )
        reader.rollback()
    assert code == 1
    failed = [c for c in data["checks"] if c["status"] == "FAIL"]
    assert [c["name"] for c in failed] == [name, later]
    assert all("lock timeout" in c["detail"] for c in failed)
    assert "\n" not in failed[0]["detail"]
    assert partition_exists(old_months, name)
    assert fingerprint(old_months) == before  # nothing lost, nothing moved
    assert (tmp_path / f"{name}.json").is_file()  # the export itself was verified

    # A late event dated in that month arrives before the rerun: the export is redone.
    with old_months.begin() as connection:
        connection.execute(text(ROWS.format(month=OLD.format(n=8))), {"n": 1})
    code, data = cli("partitions", "archive", "--export", str(tmp_path), "--url", url)
    assert code == 0
    actions = {r["partition"]: r["action"] for r in data["tables"]["Partitions"]}
    assert actions[name] == "exported 121 rows, verified; detached and dropped"
    assert actions[later] == "exported and verified already; detached and dropped"
    assert not partition_exists(old_months, name)

    # Run again: nothing left to do.
    code, data = cli("partitions", "archive", "--export", str(tmp_path), "--url", url)
    assert (code, data["tables"]["Partitions"]) == (0, [])


def test_restore_refuses_a_damaged_file_and_writes_nothing(
    old_months: Engine, tmp_path: Path
) -> None:
    url = url_text(old_months.url)
    with old_months.connect() as connection:
        name = month_name(connection, 8)
    cli("partitions", "archive", "--export", str(tmp_path), "--url", url)
    data_file = tmp_path / f"{name}.csv.gz"
    damaged = bytearray(data_file.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    data_file.write_bytes(bytes(damaged))
    code, data = cli("partitions", "restore", str(data_file), "--url", url)
    assert code == 1
    assert "does not match the manifest" in statuses_detail(data, "manifest and checksum")
    assert not partition_exists(old_months, name)

    # An edited manifest cannot point the restore at another file.
    manifest_file = tmp_path / f"{name}.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "file": "../elsewhere.csv.gz"}))
    code, data = cli("partitions", "restore", str(manifest_file), "--url", url)
    assert code == 1
    assert "do not agree" in statuses_detail(data, "manifest and checksum")


def statuses_detail(data: dict[str, Any], name: str) -> str:
    check = next(c for c in data["checks"] if c["name"] == name)
    assert check["status"] == "FAIL"
    return str(check["actual"]) + str(check["detail"])


def test_restore_needs_an_archive_file(db_url: URL, tmp_path: Path) -> None:
    url = url_text(db_url)
    assert "needs the archive file" in one_error_line(crm("partitions", "restore", "--url", url))
    line = one_error_line(crm("partitions", "restore", str(tmp_path / "nope.json"), "--url", url))
    assert "no archive manifest" in line
