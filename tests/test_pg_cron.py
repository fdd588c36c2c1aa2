"""pg_cron for real: `partitions schedule --apply` creates its two jobs, `rollback` removes
them (by name, before the functions they call are dropped) and leaves every other job.

pg_cron lives in one database per server (``cron.database_name``); on Supabase that is the
project's database, which is also the one migrated. This test has it so on a private
PostgreSQL 15 cluster (tests/pg15_cluster.py), since the shared server cannot be given a
test's database as its pg_cron database. Skipped where PostgreSQL 15 or pg_cron is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from crm_schema.runbook.partitions import CRON_JOBS
from tests import pg15_cluster
from tests.test_cli import crm, url_text

WHY_NOT = pg15_cluster.missing("pg_cron", "pg_cron")
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")

CRM_DB = "crm_cron"
USERS_JOB = "nightly-user-job"


@pytest.fixture
def cron_db() -> Iterator[URL]:
    """A database at head with pg_cron installed in it, as on Supabase."""
    settings = {"shared_preload_libraries": "pg_cron", "cron.database_name": CRM_DB}
    with pg15_cluster.cluster(settings) as server:
        engine = create_engine(server, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {CRM_DB}"))
        engine.dispose()
        url = server.set(database=CRM_DB)
        migrations.upgrade(url, "head")
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION pg_cron"))
            connection.execute(
                text("SELECT cron.schedule(:n, '0 4 * * *', 'SELECT 1')"), {"n": USERS_JOB}
            )
        engine.dispose()
        yield url


def _jobs(url: URL) -> dict[str, str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT jobname, command FROM cron.job")).all()
    engine.dispose()
    return {name: command for name, command in rows}


def test_rollback_unschedules_the_jobs_schedule_apply_created(cron_db: URL) -> None:
    url = url_text(cron_db)
    scheduled = crm("partitions", "schedule", "--apply", "--url", url)
    assert scheduled.returncode == 0, scheduled.stderr
    jobs = _jobs(cron_db)
    assert set(jobs) == {*CRON_JOBS, USERS_JOB}
    assert "public.ensure_activity_log_partitions(11)" in jobs["crm-activity-partitions-ensure"]

    rolled = crm("rollback", "--url", url, "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert (
        "Removed pg_cron jobs: crm-activity-partitions-archive, crm-activity-partitions-ensure"
        in rolled.stdout
    )
    assert migrations.current_revision(cron_db) == migrations.BASELINE_REVISION
    assert set(_jobs(cron_db)) == {USERS_JOB}  # the team's own job stays

    # Upgrading and rolling back again without a schedule: nothing to remove, and it says so.
    migrations.upgrade(cron_db, "head")
    again = crm("rollback", "--url", url, "--yes", "--json")
    assert again.returncode == 0, again.stderr
    checks = {c["name"]: c for c in json.loads(again.stdout)["checks"]}
    assert checks["pg_cron jobs removed"]["actual"] == "none scheduled here"
    assert set(_jobs(cron_db)) == {USERS_JOB}


def test_a_downgrade_below_the_scheduled_functions_unschedules_too(cron_db: URL) -> None:
    url = url_text(cron_db)
    assert crm("partitions", "schedule", "--apply", "--url", url).returncode == 0
    kept = crm("downgrade", "--to", "0005_phase3_functions_triggers", "--url", url)
    assert kept.returncode == 0, kept.stderr
    assert set(_jobs(cron_db)) == {*CRON_JOBS, USERS_JOB}  # their functions are still there
    below = crm("downgrade", "--to", "0004_phase2_indexes_constraints", "--url", url)
    assert below.returncode == 0, below.stderr
    assert "removed pg_cron jobs: crm-activity-partitions-archive" in below.stdout
    assert set(_jobs(cron_db)) == {USERS_JOB}
