"""Migrating a CRM that stays in use: upgrade and rollback finish while clients keep writing,
no client request fails, and every state a run can stop at serves the app's usual requests.

No timings are asserted: ``make bench`` measures the latencies (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from bench.live_traffic import Traffic
from crm_schema import cli, migrations
from crm_schema.db import make_engine
from tests.conftest import PgServer, new_db_name, seeded_template

BASELINE = migrations.BASELINE_REVISION
HEAD = migrations.revision_ids()[-1]
# Where a run can stop after the baseline: each commit's last revision.
STOPS = [
    batch[-1].revision
    for batch in migrations.commits()
    if migrations.revision_ids().index(batch[-1].revision)
    > migrations.revision_ids().index(BASELINE)
]


@pytest.fixture(scope="module")
def seeded_baseline(pg_server: PgServer) -> Iterator[str]:
    """A small but complete CRM at the baseline (agents with dispensaries, orders, tasks)."""
    with seeded_template(pg_server, "crm_live_tmpl", 0.001, BASELINE) as name:
        yield name


@pytest.fixture
def live_url(pg_server: PgServer, seeded_baseline: str) -> Iterator[URL]:
    name = new_db_name()
    with pg_server.janitor(name, template_dbname=seeded_baseline):
        yield pg_server.url(name)


def _text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _overlapping(traffic: Traffic, start: str, end: str) -> int:
    low, high = traffic.marks[start], traffic.marks[end]
    return sum(1 for r in traffic.requests if r.began < high and r.began + r.seconds > low)


def test_upgrade_and_rollback_finish_under_traffic_and_no_request_fails(
    live_url: URL, tmp_path: Path
) -> None:
    with Traffic(live_url, clients=8) as traffic:
        traffic.mark("upgrade")
        cli.main(["upgrade", "--url", _text(live_url), "--log-dir", str(tmp_path), "--json"])
        traffic.mark("upgraded")
        at_head = migrations.current_revision(live_url)
        traffic.mark("rollback")
        rolled_back = cli.main(["rollback", "--yes", "--url", _text(live_url), "--json"])
        traffic.mark("rolled back")
    assert at_head == HEAD
    assert rolled_back == 0
    assert migrations.current_revision(live_url) == BASELINE
    # The clients really ran through both: requests overlapped each run.
    assert _overlapping(traffic, "upgrade", "upgraded") > 0
    assert _overlapping(traffic, "rollback", "rolled back") > 0
    assert traffic.errors() == {}


@pytest.mark.parametrize("stop", STOPS)
@pytest.mark.parametrize("direction", ["upgrading", "rolling back"])
def test_every_stop_serves_the_apps_usual_requests(
    live_url: URL, stop: str, direction: str
) -> None:
    """Each state a stepwise run can commit: an agent and service_role can still read their
    dispensaries, place an order with lines, log a call and move a task along."""
    if direction == "upgrading":
        migrations.upgrade(live_url, stop)
    else:
        migrations.upgrade(live_url, HEAD)
        migrations.downgrade(live_url, stop)
    assert migrations.current_revision(live_url) == stop
    assert Traffic(live_url).every_request_once() == {}


def test_a_refused_run_writes_no_migration_log(live_url: URL, tmp_path: Path, capsys: Any) -> None:
    engine = make_engine(live_url)
    with engine.connect() as other_deploy:
        other_deploy.execute(text("SELECT pg_advisory_lock(1668443487)"))  # env.py's key
        other_deploy.commit()
        code = cli.main(["upgrade", "--url", _text(live_url), "--log-dir", str(tmp_path)])
    engine.dispose()
    assert code == 2
    assert "another crm-schema migration is running" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert migrations.current_revision(live_url) == BASELINE
