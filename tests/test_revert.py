"""Revision 0009: ``public.revert_record`` puts a tracked row back to an earlier version from
its change log (one audited update, under the caller's own RLS), and ``crm_schema.history``
exposes it with the record's list of versions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, pool, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from crm_schema import history
from crm_schema.enums import ChangeOperation
from crm_schema.models import Order
from crm_schema.session import app_engine, user_session
from tests import sample_data as s
from tests.helpers import act_as, reset_role


def q(connection: Connection, sql: str, **params: Any) -> Any:
    return connection.execute(text(sql), params).scalar()


def last_change(connection: Connection, table: str, record: uuid.UUID) -> int:
    change: int = q(
        connection,
        "SELECT max(id) FROM change_log WHERE table_name = :t AND record_id = :r",
        t=table,
        r=record,
    )
    return change


def revert(connection: Connection, table: str, record: uuid.UUID, change: int) -> int:
    version: int = q(
        connection, "SELECT public.revert_record(:t, :r, :c)", t=table, r=record, c=change
    )
    return version


@pytest.fixture
def crm(conn: Connection) -> Connection:
    """The sample CRM with order A edited twice (as the admin): notes, then notes and total."""
    s.load(conn)
    act_as(conn, s.ADMIN)
    conn.execute(text("UPDATE orders SET notes = 'call first' WHERE id = :o"), {"o": s.ORDER_A})
    conn.execute(
        text("UPDATE orders SET notes = 'leave at door', total_amount = 99 WHERE id = :o"),
        {"o": s.ORDER_A},
    )
    reset_role(conn)
    return conn


def first_edit(connection: Connection) -> int:
    change: int = q(
        connection,
        "SELECT min(id) FROM change_log WHERE record_id = :o AND operation = 'update'",
        o=s.ORDER_A,
    )
    return change


def test_admin_reverts_to_before_a_change_and_the_revert_is_audited(crm: Connection) -> None:
    act_as(crm, s.ADMIN)
    before = crm.execute(
        text("SELECT version, edit_count FROM orders WHERE id = :o"), {"o": s.ORDER_A}
    ).one()
    version = revert(crm, "orders", s.ORDER_A, first_edit(crm))
    row = crm.execute(
        text(
            "SELECT notes, total_amount, version, edit_count, updated_by FROM orders WHERE id = :o"
        ),
        {"o": s.ORDER_A},
    ).one()
    # Both later edits are undone: the notes from before the first, the total from before the
    # second (the earliest change that touched each column holds its old value).
    assert (row.notes, row.total_amount) == (None, Decimal("505.00"))
    assert (row.version, row.edit_count) == (before.version + 1, before.edit_count + 1)
    assert version == row.version
    assert row.updated_by == s.ADMIN
    audit = crm.execute(
        text(
            "SELECT operation, changed_columns, changed_by, new_values FROM change_log "
            "WHERE record_id = :o ORDER BY id DESC LIMIT 1"
        ),
        {"o": s.ORDER_A},
    ).one()
    assert audit.operation == "update"
    assert audit.changed_columns == ["notes", "total_amount"]
    assert audit.changed_by == s.ADMIN
    assert audit.new_values == {"notes": None, "total_amount": 505.0}


def test_reverting_the_latest_change_only_undoes_that_change(crm: Connection) -> None:
    act_as(crm, s.ADMIN)
    revert(crm, "orders", s.ORDER_A, last_change(crm, "orders", s.ORDER_A))
    row = crm.execute(
        text("SELECT notes, total_amount FROM orders WHERE id = :o"), {"o": s.ORDER_A}
    ).one()
    assert (row.notes, row.total_amount) == ("call first", Decimal("505.00"))


def test_reverting_a_soft_delete_restores_the_row(crm: Connection) -> None:
    act_as(crm, s.ADMIN)
    crm.execute(text("UPDATE orders SET deleted_at = now() WHERE id = :o"), {"o": s.ORDER_A})
    revert(crm, "orders", s.ORDER_A, last_change(crm, "orders", s.ORDER_A))
    row = crm.execute(
        text("SELECT deleted_at, deleted_by, notes FROM orders WHERE id = :o"), {"o": s.ORDER_A}
    ).one()
    assert (row.deleted_at, row.deleted_by, row.notes) == (None, None, "leave at door")
    assert q(crm, "SELECT operation::text FROM change_log ORDER BY id DESC LIMIT 1") == "restore"


def grant_change_log_read(connection: Connection, user: uuid.UUID) -> None:
    connection.execute(
        text(
            "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
            "VALUES (:u, 'read', 'change_log', :a)"
        ),
        {"u": user, "a": s.ADMIN},
    )


def test_an_agent_needs_read_on_change_log_and_stays_in_its_scope(crm: Connection) -> None:
    change = first_edit(crm)
    crm.commit()
    act_as(crm, s.AGENT_A)  # update on order (its role default), no read on change_log
    with pytest.raises(DBAPIError, match="needs update on order and read on change_log"):
        revert(crm, "orders", s.ORDER_A, change)
    crm.rollback()

    grant_change_log_read(crm, s.AGENT_A)
    grant_change_log_read(crm, s.AGENT_B)
    crm.commit()
    act_as(crm, s.AGENT_A)
    revert(crm, "orders", s.ORDER_A, change)
    assert q(crm, "SELECT notes FROM orders WHERE id = :o", o=s.ORDER_A) is None
    assert q(crm, "SELECT changed_by FROM change_log ORDER BY id DESC LIMIT 1") == s.AGENT_A
    crm.rollback()

    # Agent B may read the change log, but order A is not in its scope: RLS says no.
    act_as(crm, s.AGENT_B)
    with pytest.raises(DBAPIError, match="does not exist or is not yours to update"):
        revert(crm, "orders", s.ORDER_A, change)
    crm.rollback()
    # Managers read the change log (phase 5's defaults) but may not update products.
    act_as(crm, s.MANAGER)
    with pytest.raises(DBAPIError, match="permission denied: reverting products needs update"):
        revert(crm, "products", s.PRODUCT_FLOWER, change)


def test_refuses_a_record_hard_deleted_since(crm: Connection) -> None:
    change = first_edit(crm)
    act_as(crm, s.ADMIN)
    crm.execute(text("DELETE FROM order_items WHERE order_id = :o"), {"o": s.ORDER_A})
    crm.execute(text("DELETE FROM orders WHERE id = :o"), {"o": s.ORDER_A})
    with pytest.raises(DBAPIError, match="has since been hard-deleted"):
        revert(crm, "orders", s.ORDER_A, change)


def test_refuses_a_column_dropped_since(crm: Connection) -> None:
    crm.execute(text("ALTER TABLE orders ADD COLUMN promo_code text"))
    # API roles write only the columns granted to them (revision 0006): a new one needs a grant.
    crm.execute(text("GRANT UPDATE (promo_code) ON orders TO authenticated"))
    act_as(crm, s.ADMIN)
    crm.execute(text("UPDATE orders SET promo_code = 'FALL26' WHERE id = :o"), {"o": s.ORDER_A})
    change = last_change(crm, "orders", s.ORDER_A)
    crm.execute(text("UPDATE orders SET promo_code = 'WINTER' WHERE id = :o"), {"o": s.ORDER_A})
    reset_role(crm)
    crm.execute(text("ALTER TABLE orders DROP COLUMN promo_code"))
    act_as(crm, s.ADMIN)
    with pytest.raises(DBAPIError, match=r"column\(s\) promo_code have since been dropped"):
        revert(crm, "orders", s.ORDER_A, change)


def test_refuses_old_values_that_break_a_constraint_today(crm: Connection) -> None:
    act_as(crm, s.ADMIN)
    crm.execute(
        text("UPDATE products SET sku = 'OK-FL-NEW' WHERE id = :p"), {"p": s.PRODUCT_FLOWER}
    )
    change = last_change(crm, "products", s.PRODUCT_FLOWER)
    crm.execute(text("UPDATE products SET sku = 'OK-FL-001' WHERE id = :p"), {"p": s.PRODUCT_VAPE})
    with pytest.raises(DBAPIError, match="would break products_sku_key") as caught:
        revert(crm, "products", s.PRODUCT_FLOWER, change)
    assert caught.value.orig is not None
    assert caught.value.orig.sqlstate == "23505"  # the original error's code is kept


@pytest.mark.parametrize(
    ("table", "record", "change", "message"),
    [
        ("orders; DROP TABLE orders", s.ORDER_A, 1, "is not a tracked table"),
        ("change_log", s.ORDER_A, 1, "is not a tracked table"),
        ("orders", s.ORDER_B, None, "is not a change of orders"),
        ("orders", s.ORDER_A, 0, "is not a change of orders"),
    ],
)
def test_refuses_bad_arguments(
    crm: Connection, table: str, record: uuid.UUID, change: int | None, message: str
) -> None:
    change = first_edit(crm) if change is None else change  # order A's change, asked of B
    act_as(crm, s.ADMIN)
    with pytest.raises(DBAPIError, match=message):
        revert(crm, table, record, change)
    crm.rollback()
    assert q(crm, "SELECT to_regclass('public.orders')") is not None


def test_refuses_to_undo_the_insert(crm: Connection) -> None:
    act_as(crm, s.ADMIN)
    insert = q(
        crm,
        "SELECT id FROM change_log WHERE record_id = :o AND operation = 'insert'",
        o=s.ORDER_A,
    )
    with pytest.raises(DBAPIError, match="there is no earlier version"):
        revert(crm, "orders", s.ORDER_A, insert)


def test_function_is_invoker_with_a_fixed_search_path_and_no_anon(crm: Connection) -> None:
    row = crm.execute(
        text(
            "SELECT p.prosecdef, p.proconfig, "
            "has_function_privilege('anon', p.oid, 'EXECUTE') AS anon, "
            "has_function_privilege('authenticated', p.oid, 'EXECUTE') AS authenticated, "
            "has_function_privilege('service_role', p.oid, 'EXECUTE') AS service "
            "FROM pg_proc p WHERE p.oid = 'public.revert_record(text, uuid, bigint)'::regprocedure"
        )
    ).one()
    assert row.prosecdef is False
    assert row.proconfig == ['search_path=""']
    assert (row.anon, row.authenticated, row.service) == (False, True, True)


# --- crm_schema.history ------------------------------------------------------------------


@pytest.fixture
def app(db_url: URL) -> Iterator[Engine]:
    engine = app_engine(db_url, poolclass=pool.NullPool)
    with engine.begin() as connection:
        s.load(connection)
    yield engine
    engine.dispose()


def test_history_lists_versions_and_reverts_through_the_models(app: Engine) -> None:
    with user_session(app, s.ADMIN) as session:
        order = session.get_one(Order, s.ORDER_A)
        order.notes = "first note"
        session.commit()
        order.notes = "second note"
        session.commit()

        found = history.versions(session, order)
        assert [v.operation for v in found] == [
            ChangeOperation.INSERT,
            ChangeOperation.UPDATE,
            ChangeOperation.UPDATE,
        ]
        assert [v.values["notes"] if v.values else "-" for v in found] == [
            None,
            "first note",
            "second note",
        ]
        assert found[-1].changed_columns == ["notes"]
        assert found[-1].changed_by == s.ADMIN

        version = history.revert(session, order, found[1].change_id)
        session.commit()
        # The ORM object was reloaded: it shows the reverted content and the new version,
        # so the next edit through it is not refused as stale.
        assert (order.notes, order.version) == (None, version)
        order.notes = "third note"
        session.commit()
        assert len(history.versions(session, order)) == 5


def test_history_versions_needs_read_on_change_log(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session:
        order = session.scalars(select(Order).where(Order.id == s.ORDER_A)).one()
        assert history.versions(session, order) == []  # RLS hides the change log
