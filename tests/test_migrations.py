"""Every revision is reversible: pytest-alembic's standard tests, plus a walk that proves each
downgrade restores the catalogs (policies, grants, functions, triggers included) and every
pre-existing row exactly."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from tests import catalog, sample_data
from tests.conftest import SUPABASE_SHAPE

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


def _state(engine: Engine) -> tuple[dict[str, Any], dict[str, list[str]]]:
    with engine.connect() as connection:
        return catalog.rollback_snapshot(connection), catalog.table_rows(connection)


def _config(url: URL) -> Config:
    return migrations.make_config(url)


def test_revision_ids_are_the_documented_chain() -> None:
    ids = [script.revision for script in migrations.revisions_in_order()]
    assert ids[:2] == ["0001_supabase_compat", "0002_crm_baseline"]
    assert all(id_[:4].isdigit() for id_ in ids)
    assert [int(id_[:4]) for id_ in ids] == list(range(1, len(ids) + 1))


def _assert_restored(before: Any, after: Any, what: str) -> None:
    assert catalog.diff(before[0], after[0]) == "", f"downgrade of {what}"
    # The change log may only grow: a data migration's own changes are audited too.
    old_log, new_log = before[1].pop("change_log", []), after[1].pop("change_log", [])
    assert set(old_log) <= set(new_log), f"change_log rows lost by {what}"
    assert before[1] == after[1], f"rows changed by {what} up/down"


def test_every_commit_walks_up_down_up_exactly(empty_db_url: URL, make_engine: Any) -> None:
    """At each stop (a revision, or revisions that commit together): upgrade one step,
    downgrade it, and find the catalogs and every row exactly as they were; then upgrade
    again (the down migration left nothing in the way). Sample CRM rows are loaded at the
    baseline so every later step must carry them."""
    engine = make_engine(empty_db_url)
    config = _config(empty_db_url)
    previous = "base"
    for batch in migrations.commits():
        end = batch[-1].revision
        before = _state(engine)
        command.upgrade(config, end)
        command.downgrade(config, previous)
        _assert_restored(before, _state(engine), end)
        command.upgrade(config, end)
        if end == migrations.BASELINE_REVISION:
            with engine.begin() as connection:
                sample_data.load(connection)
        previous = end


def test_revisions_inside_a_commit_walk_exactly_too(empty_db_url: URL, make_engine: Any) -> None:
    """Revisions that commit together still each have an exact downgrade: walked one by one
    inside one transaction (a caller's connection, which env.py never splits or commits)."""
    engine = make_engine(empty_db_url)
    command.upgrade(_config(empty_db_url), migrations.BASELINE_REVISION)
    with engine.begin() as connection:
        sample_data.load(connection)
    grouped = [batch for batch in migrations.commits() if len(batch) > 1]
    assert grouped, "no revisions commit together any more: drop this test"
    for batch in grouped:
        command.upgrade(_config(empty_db_url), batch[0].down_revision)
        with engine.connect() as connection:
            config = _config(empty_db_url)
            config.attributes["connection"] = connection
            previous = batch[0].down_revision
            for script in batch:
                before = (catalog.rollback_snapshot(connection), catalog.table_rows(connection))
                command.upgrade(config, script.revision)
                command.downgrade(config, previous)
                after = (catalog.rollback_snapshot(connection), catalog.table_rows(connection))
                _assert_restored(before, after, script.revision)
                command.upgrade(config, script.revision)
                previous = script.revision
            connection.rollback()


def test_a_run_never_stops_inside_a_commit(empty_db_url: URL) -> None:
    """0006's policies need 0007's default data: neither direction may stop between them,
    and a refused target changes nothing."""
    config = _config(empty_db_url)
    command.upgrade(config, "0005_phase3_functions_triggers")
    with pytest.raises(CommandError, match="commits together with 0007_phase5_default_data"):
        command.upgrade(config, "0006_phase4_security_policies")
    assert migrations.current_revision(empty_db_url) == "0005_phase3_functions_triggers"
    command.upgrade(config, "head")
    with pytest.raises(CommandError, match="downgrade to 0005_phase3_functions_triggers"):
        command.downgrade(config, "0006_phase4_security_policies")
    assert migrations.current_revision(empty_db_url) == migrations.revision_ids()[-1]
    command.downgrade(config, "0005_phase3_functions_triggers")
    assert migrations.current_revision(empty_db_url) == "0005_phase3_functions_triggers"


def test_downgrade_base_leaves_nothing_but_the_version_table(
    empty_db_url: URL, make_engine: Any
) -> None:
    engine = make_engine(empty_db_url)
    with engine.connect() as connection:
        empty = catalog.snapshot(connection)
    command.upgrade(_config(empty_db_url), "head")
    command.downgrade(_config(empty_db_url), "base")
    with engine.connect() as connection:
        assert catalog.diff(empty, catalog.snapshot(connection)) == ""
        leftovers = connection.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'"
            )
        ).scalars()
        assert list(leftovers) == ["alembic_version"]


@pytest.mark.skipif(not SUPABASE_SHAPE, reason="needs the Supabase-shaped database")
def test_on_a_supabase_shaped_database_0001_creates_nothing(
    empty_db_url: URL, make_engine: Any
) -> None:
    # Supabase provides the API roles, auth.users and auth.uid()/role()/jwt(): the shim
    # must find them all and add nothing, not even a marker comment.
    engine = make_engine(empty_db_url)
    with engine.connect() as connection:
        before = catalog.snapshot(connection)
    command.upgrade(_config(empty_db_url), "0001_supabase_compat")
    with engine.connect() as connection:
        assert catalog.diff(before, catalog.snapshot(connection)) == ""
        marked = connection.execute(
            text(
                "SELECT description FROM pg_description WHERE description LIKE 'crm-schema:0001%' "
                "UNION ALL SELECT description FROM pg_shdescription "
                "WHERE description = 'crm-schema:0001_supabase_compat:' || current_database()"
            )
        ).all()
        assert marked == []
