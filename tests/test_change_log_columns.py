"""The change log follows the tables' columns with no extra step: only changed columns are
logged, a column added after head is logged exactly, and a dropped or renamed one breaks no
write."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, text

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
