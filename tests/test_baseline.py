"""The baseline CRM schema: its keys, indexes and original Row Level Security."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, ProgrammingError

from crm_schema import migrations
from tests import sample_data as s
from tests.helpers import act_as

BASELINE_TABLES = [
    "communications",
    "dispensary_profiles",
    "order_items",
    "orders",
    "products",
    "profiles",
    "tasks",
]


@pytest.fixture
def baseline(empty_db_url: URL, make_engine: object) -> Iterator[Connection]:
    """A database at 0002_crm_baseline with the sample CRM loaded."""
    command.upgrade(migrations.make_config(empty_db_url), migrations.BASELINE_REVISION)
    engine: Engine = make_engine(empty_db_url)  # type: ignore[operator]
    with engine.connect() as connection:
        s.load(connection)
        yield connection
        connection.rollback()


def _ids(connection: Connection, sql: str) -> set[uuid.UUID]:
    return set(connection.execute(text(sql)).scalars())


def test_seed_table_check_finds_all_seven(baseline: Connection) -> None:
    # The seed's pre-flight query, verbatim.
    found = baseline.execute(
        text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' "
            "AND table_name IN ('profiles', 'dispensary_profiles', 'products', 'communications', "
            "'tasks', 'orders', 'order_items');"
        )
    ).scalars()
    assert sorted(found) == BASELINE_TABLES


def test_rls_is_enabled_on_every_baseline_table(baseline: Connection) -> None:
    rows = baseline.execute(
        text(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind = 'r' AND relrowsecurity ORDER BY 1"
        )
    ).scalars()
    assert list(rows) == BASELINE_TABLES


def test_every_foreign_key_has_an_index(baseline: Connection) -> None:
    unindexed = baseline.execute(
        text(
            """
            SELECT c.conrelid::regclass::text, c.conname FROM pg_constraint c
            WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
              AND NOT EXISTS (
                SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid
                  AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey)
            """
        )
    ).all()
    assert unindexed == []


def test_agent_sees_only_their_dispensaries_and_related_rows(baseline: Connection) -> None:
    act_as(baseline, s.AGENT_A)
    assert _ids(baseline, "SELECT id FROM dispensary_profiles") == {s.DISPENSARY_A}
    assert _ids(baseline, "SELECT id FROM orders") == {s.ORDER_A}
    assert _ids(baseline, "SELECT order_id FROM order_items") == {s.ORDER_A}
    assert _ids(baseline, "SELECT dispensary_id FROM communications") == {s.DISPENSARY_A}
    assert _ids(baseline, "SELECT dispensary_id FROM tasks") == {s.DISPENSARY_A}
    # The product catalogue and the staff list are shared.
    assert len(_ids(baseline, "SELECT id FROM products")) == 2
    assert len(_ids(baseline, "SELECT id FROM profiles")) == 4


@pytest.mark.parametrize("who", [s.ADMIN, s.MANAGER])
def test_admins_and_managers_see_everything(baseline: Connection, who: uuid.UUID) -> None:
    act_as(baseline, who)
    assert len(_ids(baseline, "SELECT id FROM dispensary_profiles")) == 3
    assert _ids(baseline, "SELECT id FROM orders") == {s.ORDER_A, s.ORDER_B}


def test_agent_cannot_touch_another_agents_rows(baseline: Connection) -> None:
    act_as(baseline, s.AGENT_A)
    updated = baseline.execute(
        text("UPDATE orders SET notes = 'mine now' WHERE id = :id"), {"id": s.ORDER_B}
    )
    assert updated.rowcount == 0
    with pytest.raises(ProgrammingError, match="row-level security"):
        baseline.execute(
            text("INSERT INTO orders (dispensary_id, agent_id) VALUES (:d, :a)"),
            {"d": s.DISPENSARY_B, "a": s.AGENT_A},
        )


def test_agent_cannot_make_themselves_admin(baseline: Connection) -> None:
    act_as(baseline, s.AGENT_A)
    with pytest.raises(ProgrammingError, match="row-level security"):
        baseline.execute(
            text("UPDATE profiles SET role = 'admin' WHERE id = :id"), {"id": s.AGENT_A}
        )


def test_agent_may_edit_own_profile_but_not_others(baseline: Connection) -> None:
    act_as(baseline, s.AGENT_A)
    mine = baseline.execute(
        text("UPDATE profiles SET phone = '918-555-0100' WHERE id = :id"), {"id": s.AGENT_A}
    )
    theirs = baseline.execute(
        text("UPDATE profiles SET phone = '918-555-0100' WHERE id = :id"), {"id": s.AGENT_B}
    )
    assert (mine.rowcount, theirs.rowcount) == (1, 0)


@pytest.mark.parametrize("table", BASELINE_TABLES)
def test_anon_can_read_nothing(baseline: Connection, table: str) -> None:
    act_as(baseline, None, role="anon")
    with pytest.raises(DBAPIError, match="permission denied"):
        baseline.execute(text(f"SELECT 1 FROM public.{table}"))


def test_updated_at_is_maintained(baseline: Connection) -> None:
    baseline.execute(
        text("UPDATE products SET updated_at = '2000-01-01' WHERE id = :id"),
        {"id": s.PRODUCT_FLOWER},
    )
    year = baseline.execute(
        text("SELECT extract(year FROM updated_at) FROM products WHERE id = :id"),
        {"id": s.PRODUCT_FLOWER},
    ).scalar()
    assert year != 2000
