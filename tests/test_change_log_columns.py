"""The change log follows the tables' columns with no extra step: only changed columns are
logged, a column added after head is logged exactly, and a dropped or renamed one breaks no
write."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from tests import sample_data as s
from tests.helpers import act_as, reset_role


def q(connection: Connection, sql: str, **params: Any) -> Any:
    return connection.execute(text(sql), params).scalar()


@pytest.fixture
def crm(conn: Connection) -> Connection:
    s.load(conn)
    conn.execute(text("DELETE FROM change_log"))
    return conn


def logged(connection: Connection, record: Any) -> list[tuple[Any, ...]]:
    rows = connection.execute(
        text(
            "SELECT operation::text, changed_columns, old_values, new_values, changed_by "
            "FROM change_log WHERE record_id = :r ORDER BY id"
        ),
        {"r": record},
    )
    return [tuple(r) for r in rows]


def signed_in(connection: Connection, user: Any) -> None:
    """auth.uid() is ``user`` while the session stays the owner: a column added here has no
    grant for the API roles, and it is the trigger that is under test, not the grants."""
    claims = f'{{"sub": "{user}"}}'
    connection.execute(text("SELECT set_config('request.jwt.claims', :c, true)"), {"c": claims})


def test_only_changed_columns_with_old_and_new_values(crm: Connection) -> None:
    act_as(crm, s.ADMIN)
    crm.execute(
        text("UPDATE orders SET notes = 'rush', status = 'shipped' WHERE id = :o"),
        {"o": s.ORDER_A},
    )
    before = q(crm, "SELECT count(*) FROM change_log")
    crm.execute(text("UPDATE orders SET notes = 'rush' WHERE id = :o"), {"o": s.ORDER_A})  # no-op
    reset_role(crm)
    # As the owner (API roles may not name these columns): edit tracking puts them back.
    crm.execute(
        text("UPDATE orders SET version = 99, edit_count = 7 WHERE id = :o"), {"o": s.ORDER_A}
    )
    assert q(crm, "SELECT count(*) FROM change_log") == before  # no-op and bookkeeping: nothing
    ((operation, columns, old, new, actor),) = logged(crm, s.ORDER_A)
    assert (operation, columns, actor) == ("update", ["notes", "status"], s.ADMIN)
    assert set(old) == set(new) == {"notes", "status"}
    assert new == {"notes": "rush", "status": "shipped"}
    assert old["status"] == "confirmed"


def test_a_column_added_outside_a_migration_is_logged_exactly(crm: Connection) -> None:
    version = "SELECT version FROM orders WHERE id = :o"
    before = q(crm, version, o=s.ORDER_A)
    crm.execute(text("ALTER TABLE orders ADD COLUMN courier text"))
    signed_in(crm, s.ADMIN)
    crm.execute(text("UPDATE orders SET courier = 'Ana' WHERE id = :o"), {"o": s.ORDER_A})
    crm.execute(text("UPDATE orders SET notes = 'late' WHERE id = :o"), {"o": s.ORDER_A})
    crm.execute(text("UPDATE orders SET courier = 'Ana' WHERE id = :o"), {"o": s.ORDER_A})  # no-op
    reset_role(crm)
    assert [(op, cols, new) for op, cols, _, new, _ in logged(crm, s.ORDER_A)] == [
        ("update", ["courier"], {"courier": "Ana"}),
        ("update", ["notes"], {"notes": "late"}),
    ]
    assert q(crm, version, o=s.ORDER_A) == before + 2  # two edits; the no-op is none


def test_dropped_and_renamed_columns_break_no_write(crm: Connection) -> None:
    crm.execute(text("ALTER TABLE orders DROP COLUMN requested_delivery_date"))
    crm.execute(text("ALTER TABLE orders RENAME COLUMN notes TO remarks"))
    signed_in(crm, s.ADMIN)
    crm.execute(text("UPDATE orders SET remarks = 'renamed' WHERE id = :o"), {"o": s.ORDER_A})
    crm.execute(text("UPDATE orders SET status = 'shipped' WHERE id = :o"), {"o": s.ORDER_A})
    crm.execute(text("UPDATE orders SET deleted_at = now() WHERE id = :o"), {"o": s.ORDER_A})
    crm.execute(text("UPDATE orders SET deleted_at = NULL WHERE id = :o"), {"o": s.ORDER_A})
    new_order = q(
        crm,
        "INSERT INTO orders (dispensary_id, total_amount) VALUES (:d, 5) RETURNING id",
        d=s.DISPENSARY_A,
    )
    crm.execute(text("DELETE FROM orders WHERE id = :o"), {"o": new_order})
    reset_role(crm)
    assert [(op, cols) for op, cols, *_ in logged(crm, s.ORDER_A)] == [
        ("update", ["remarks"]),
        ("update", ["status"]),
        ("soft_delete", ["deleted_at", "deleted_by"]),
        ("restore", ["deleted_at", "deleted_by"]),
    ]
    assert [op for op, *_ in logged(crm, new_order)] == ["insert", "delete"]


# The generic path, made to fail loudly: a write that reaches it raises, so a test can tell
# which path logged a change.
GENERIC_FAILS = """
CREATE OR REPLACE FUNCTION private.log_update_generic(relation text, old_row jsonb,
                                                      new_row jsonb, actor uuid) RETURNS boolean
    LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    RAISE EXCEPTION 'generic path taken for %', relation;
END $$"""


def test_updates_take_the_generated_path_until_the_columns_change(crm: Connection) -> None:
    crm.execute(text(GENERIC_FAILS))
    signed_in(crm, s.ADMIN)
    crm.execute(text("UPDATE orders SET notes = 'typed' WHERE id = :o"), {"o": s.ORDER_A})
    crm.execute(text("SAVEPOINT before_alter"))
    crm.execute(text("ALTER TABLE orders ADD COLUMN courier text"))
    with pytest.raises(Exception, match="generic path taken for orders"):
        crm.execute(text("UPDATE orders SET notes = 'added' WHERE id = :o"), {"o": s.ORDER_A})
    crm.execute(text("ROLLBACK TO SAVEPOINT before_alter"))
    crm.execute(text("ALTER TABLE orders RENAME COLUMN notes TO remarks"))
    with pytest.raises(Exception, match="generic path taken for orders"):
        crm.execute(text("UPDATE orders SET remarks = 'renamed' WHERE id = :o"), {"o": s.ORDER_A})
    crm.execute(text("ROLLBACK TO SAVEPOINT before_alter"))
    # Regenerated for the new columns, the fast path logs them too.
    crm.execute(text("ALTER TABLE orders ADD COLUMN courier text"))
    assert q(crm, "SELECT private.refresh_change_log()") == 1  # orders alone changed
    assert q(crm, "SELECT private.refresh_change_log()") == 0  # and is now current
    crm.execute(
        text("UPDATE orders SET courier = 'Ana', status = 'shipped' WHERE id = :o"),
        {"o": s.ORDER_A},
    )
    reset_role(crm)
    assert [(cols, new) for _, cols, _, new, _ in logged(crm, s.ORDER_A)] == [
        (["notes"], {"notes": "typed"}),
        (["courier", "status"], {"courier": "Ana", "status": "shipped"}),
    ]


def test_both_paths_log_the_same_rows(crm: Connection) -> None:
    """Soft delete, restore, an edit to every kind of column, on every table: what the
    generated functions write is what the generic path writes."""

    def run() -> list[tuple[Any, ...]]:
        crm.execute(text("SAVEPOINT run"))
        act_as(crm, s.ADMIN)
        crm.execute(
            text(
                "UPDATE orders SET notes = NULL, total_amount = 12.50, status = 'shipped', "
                "metadata = '{\"a\": [1, 2]}', requested_delivery_date = '2027-01-02' "
                "WHERE id = :o"
            ),
            {"o": s.ORDER_A},
        )
        crm.execute(text("UPDATE orders SET deleted_at = now() WHERE id = :o"), {"o": s.ORDER_A})
        crm.execute(text("UPDATE orders SET deleted_at = NULL WHERE id = :o"), {"o": s.ORDER_A})
        crm.execute(
            text("UPDATE profiles SET full_name = 'Renamed' WHERE id = :u"), {"u": s.AGENT_A}
        )
        reset_role(crm)
        signed_in(crm, s.ADMIN)  # as the owner: the permission tables' own grants aside
        crm.execute(text("UPDATE role_permissions SET resource = resource"))  # no-op
        crm.execute(
            text("UPDATE role_permissions SET created_by = :u WHERE role = 'agent'"),
            {"u": s.ADMIN},
        )
        rows = crm.execute(
            text(
                "SELECT table_name, record_id, operation::text, changed_columns, old_values, "
                "new_values, changed_by FROM change_log ORDER BY id"
            )
        ).all()
        # Edit tracking too: both paths bump on the same edits and not on the no-op.
        bumps = crm.execute(
            text(
                "SELECT version, edit_count, updated_by FROM orders WHERE id = :o UNION ALL "
                "SELECT version, edit_count, updated_by FROM profiles WHERE id = :u"
            ),
            {"o": s.ORDER_A, "u": s.AGENT_A},
        ).all()
        crm.execute(text("ROLLBACK TO SAVEPOINT run"))
        return [tuple(r) for r in rows + bumps]

    generated = run()
    # A column the generated functions do not know sends every table's updates to the
    # generic path (test_updates_take_the_generated_path_until_the_columns_change).
    for table in ("orders", "profiles", "role_permissions"):
        crm.execute(text(f"ALTER TABLE {table} ADD COLUMN unknown_to_the_trigger text"))
    generic = run()
    agent_defaults = q(crm, "SELECT count(*) FROM role_permissions WHERE role = 'agent'")
    assert [r[2] for r in generated[:-2]] == ["update", "soft_delete", "restore", "update"] + [
        "update"
    ] * agent_defaults
    assert [r[:2] for r in generated[-2:]] == [(4, 3), (2, 1)]  # (version, edit_count)
    assert agent_defaults > 0
    assert generated == generic


def test_a_migration_run_brings_the_fast_path_up_to_date(db_url: URL) -> None:
    """A column added between two migration runs (by hand here, by a revision in life) is
    in orders' generated function once crm-schema or alembic has run a revision again."""

    def generated_for(connection: Connection) -> str:
        return str(
            q(connection, "SELECT obj_description('private.track_orders_edit()'::regprocedure)")
        )

    engine = create_engine(db_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE orders ADD COLUMN courier text"))
            assert "courier" not in generated_for(connection)
        previous = migrations.revision_ids()[-2]
        migrations.downgrade(db_url, previous)
        migrations.upgrade(db_url, "head")
        with engine.begin() as connection:
            assert "courier" in generated_for(connection)
    finally:
        engine.dispose()


def test_the_actor_read_from_the_row_cannot_be_sent_by_the_client(crm: Connection) -> None:
    """The change log takes the actor from updated_by, which edit tracking has just set to
    auth.uid(): whatever updated_by a session sends is not what is logged."""
    signed_in(crm, s.ADMIN)  # as the owner, who may name updated_by
    crm.execute(
        text("UPDATE orders SET notes = 'spoof', updated_by = :u WHERE id = :o"),
        {"u": s.AGENT_B, "o": s.ORDER_A},
    )
    new_order = q(
        crm,
        "INSERT INTO orders (dispensary_id, total_amount, updated_by) "
        "VALUES (:d, 5, :u) RETURNING id",
        d=s.DISPENSARY_A,
        u=s.AGENT_B,
    )
    assert [(op, actor) for op, *_, actor in logged(crm, s.ORDER_A)] == [("update", s.ADMIN)]
    assert [(op, actor) for op, *_, actor in logged(crm, new_order)] == [("insert", s.ADMIN)]
    assert q(crm, "SELECT updated_by FROM orders WHERE id = :o", o=s.ORDER_A) == s.ADMIN


def test_the_log_shows_the_row_as_written_after_the_other_before_triggers(
    crm: Connection,
) -> None:
    """track_edit fires last: what an earlier BEFORE trigger changed (here user_permissions'
    granted_by, stamped with the acting user) is in the log row, as the table stores it."""
    grant = q(
        crm,
        "INSERT INTO user_permissions (user_id, permission, resource, granted, granted_by) "
        "VALUES (:u, 'export', 'order', true, :m) RETURNING id",
        u=s.AGENT_A,
        m=s.MANAGER,
    )
    act_as(crm, s.ADMIN)
    crm.execute(text("UPDATE user_permissions SET reason = 'audit' WHERE id = :g"), {"g": grant})
    reset_role(crm)
    ((operation, columns, old, new, actor),) = [r for r in logged(crm, grant) if r[0] != "insert"]
    assert (operation, columns, actor) == ("update", ["granted_by", "reason"], s.ADMIN)
    assert old["granted_by"] == str(s.MANAGER)
    stored = q(crm, "SELECT to_jsonb(p) FROM user_permissions AS p WHERE id = :g", g=grant)
    assert new == {column: stored[column] for column in columns}
    assert new["granted_by"] == str(s.ADMIN)
