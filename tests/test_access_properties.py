"""Property-based: random sequences of API writes (inserts, edits, soft deletes, restores, hard
deletes, take-overs, moves) by random actors, checked after every step against the access
model (crm_schema/access_model.py).

After each step: the database allowed exactly what the model allows (nothing outside the
actor's scope is changed, and a refused write changes nothing); no one's role, activity or
permissions moved (no escalation); every change that went through has exactly one new
change_log row naming the real actor and the right operation; and soft-deleted rows are seen
by admins only (and by the deleter until its transaction ends, as PostgreSQL checks an
updated row against the SELECT policies).

Bounded and reproducible for CI: a fixed example count and derandomize (a fixed seed).
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from crm_schema import access_model as m
from tests.helpers import act_as, reset_role
from tests.test_access_model import A0, B, M, X, _run, build_world

AUDITOR = uuid.UUID("00000000-0000-4000-8000-0000000000f1")
USERS = {X: "agent", B: "agent", M: "manager", A0: "admin", AUDITOR: "auditor"}
TABLES = ("orders", "communications", "dispensary_profiles", "order_items")
CONTENT = {
    "orders": "notes",
    "communications": "subject",
    "dispensary_profiles": "notes",
    "order_items": "quantity",
}
OPS = ("edit", "soft_delete", "take_over", "move", "insert", "restore", "hard_delete")
# Hard deletes only where nothing cascades (one change-log row per statement to check).
HARD_DELETABLE = ("communications", "order_items")

step = st.tuples(
    st.sampled_from(sorted(USERS, key=str)),
    st.sampled_from(TABLES),
    st.sampled_from(OPS),
    st.integers(min_value=0, max_value=5),  # which row
    st.integers(min_value=0, max_value=1),  # which dispensary a move goes to
)


def _q(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar()


def _dispensary_agent(conn: Connection, dispensary: Any) -> Any:
    return _q(conn, "SELECT assigned_agent_id FROM dispensary_profiles WHERE id = :d", d=dispensary)


def _kind(conn: Connection, table: str, row: dict[str, Any], user: uuid.UUID) -> str:
    """The row's kind for ``user``, from the row's values (as crm_schema/access_model.py names)."""
    if table == "order_items":
        order = _q(conn, "SELECT to_jsonb(o) FROM orders AS o WHERE id = :i", i=row["order_id"])
        return _kind(conn, "orders", order, user)
    if table == "dispensary_profiles":
        return "own" if row["assigned_agent_id"] == str(user) else "elsewhere"
    mine = _dispensary_agent(conn, row["dispensary_id"]) == user
    if mine and row["agent_id"] == str(user):
        return "own"
    return "at_mine" if mine else "elsewhere"


def _snapshot(conn: Connection) -> tuple[Any, ...]:
    return tuple(
        sorted(map(str, conn.execute(text(sql)).scalars()))
        for sql in (
            "SELECT to_jsonb(p) - 'updated_at' - 'version' - 'edit_count' - 'updated_by' "
            "- 'full_name' FROM (SELECT id, role, is_active, deleted_at FROM profiles) AS p",
            "SELECT to_jsonb(u) FROM user_permissions AS u",
            "SELECT to_jsonb(r) FROM role_permissions AS r",
        )
    )


def _statement(op: str, table: str, user: uuid.UUID, target: Any) -> tuple[str, dict[str, Any]]:
    column = CONTENT[table]
    if op == "edit":
        value = "quantity + 1" if table == "order_items" else "coalesce(" + column + ", '') || 'x'"
        return f"UPDATE {table} SET {column} = {value} WHERE id = :i", {}
    if op == "soft_delete":
        return f"UPDATE {table} SET deleted_at = now() WHERE id = :i", {}
    if op == "take_over":
        owner = {"dispensary_profiles": "assigned_agent_id", "order_items": "quantity"}.get(
            table, "agent_id"
        )
        value = ":u" if owner != "quantity" else "quantity"
        return f"UPDATE {table} SET {owner} = {value} WHERE id = :i", {"u": user}
    if op == "restore":
        return f"UPDATE {table} SET deleted_at = NULL WHERE id = :i", {}
    if op == "hard_delete":
        return f"DELETE FROM {table} WHERE id = :i", {}
    place = "order_id" if table == "order_items" else "dispensary_id"
    if table == "dispensary_profiles":
        place = "name"
        return f"UPDATE {table} SET name = name || '!' WHERE id = :i", {}
    return f"UPDATE {table} SET {place} = :t WHERE id = :i", {"t": target}


def _expected(
    conn: Connection,
    actor: str,
    table: str,
    op: str,
    before: dict[str, Any],
    after_values: dict[str, Any],
    user: uuid.UUID,
) -> bool:
    command = _command(op, before)
    if not m.allowed(actor, table, command, _kind(conn, table, before, user)):
        return False
    if actor in ("manager", "admin", "delegate") or command in ("restore", "hard_delete"):
        return True
    # An agent's update must leave a row it could insert: nothing moves out of (or into) scope.
    moved = {**before, **after_values}
    return _kind(conn, table, moved, user) == "own"


def _command(op: str, before: dict[str, Any]) -> str:
    """The access model's command for an operation on this row."""
    if op in ("soft_delete", "hard_delete"):
        return op
    if op == "restore" and before.get("deleted_at") is not None:
        return "restore"
    return "update"  # restoring a live row is an update that changes nothing


def _logged_operation(op: str, before: dict[str, Any]) -> str:
    if op == "hard_delete":
        return "delete"
    if op == "soft_delete" and before["deleted_at"] is None:
        return "soft_delete"
    if op == "restore" and before["deleted_at"] is not None:
        return "restore"
    return "update"


INSERTS = {
    "orders": (
        "INSERT INTO orders (dispensary_id, agent_id, total_amount) VALUES (:t, :u, 1) RETURNING id"
    ),
    "communications": (
        "INSERT INTO communications (dispensary_id, agent_id, type, subject) "
        "VALUES (:t, :u, 'call', 'check-in') RETURNING id"
    ),
    "order_items": (
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
        "VALUES (:t, (SELECT id FROM products ORDER BY id LIMIT 1), 1, 1) RETURNING id"
    ),
}


def _check_insert(conn: Connection, user: uuid.UUID, table: str, where_to: int) -> None:
    """A new row placed at a dispensary (or on an order): allowed exactly as the model says
    for a row of that kind, logged once with the real actor when it goes in."""
    table = table if table in INSERTS else "communications"
    parent = "orders" if table == "order_items" else "dispensary_profiles"
    targets = list(conn.execute(text(f"SELECT id, deleted_at FROM {parent} ORDER BY id")).all())
    target, deleted_at = targets[where_to % len(targets)]
    if deleted_at is not None:
        return  # a soft-deleted parent: covered by the case-by-case test, not here
    row = {"order_id": str(target)} if table == "order_items" else {}
    row |= {"dispensary_id": str(target), "agent_id": str(user)} if not row else {}
    expected = m.allowed(USERS[user], table, "insert", _kind(conn, table, row, user))
    privileges = _snapshot(conn)
    last_log = _q(conn, "SELECT coalesce(max(id), 0) FROM change_log")
    act_as(conn, user)
    outcome = _run(conn, INSERTS[table], {"t": target, "u": user})
    reset_role(conn)
    went_through = outcome not in ("refused", 0, None)
    step_name = f"{USERS[user]} insert {table} at {target}"
    assert went_through == expected, f"{step_name}: model {expected}, db {went_through}"
    assert _snapshot(conn) == privileges, f"{step_name}: privileges moved"
    new_logs = conn.execute(
        text("SELECT record_id, changed_by, operation::text FROM change_log WHERE id > :n"),
        {"n": last_log},
    ).all()
    expected_logs = [(outcome, user, "insert")] if went_through else []
    assert [tuple(r) for r in new_logs] == expected_logs, step_name


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_random_api_writes_stay_inside_the_model(conn: Connection, steps: list[Any]) -> None:
    if not _q(conn, "SELECT count(*) FROM profiles WHERE id = :x", x=X):
        build_world(conn, "agent")
        conn.execute(text("INSERT INTO auth.users (id) VALUES (:u)"), {"u": AUDITOR})
        conn.execute(
            text(
                "INSERT INTO profiles (id, email, role) VALUES (:u, 'audit@okcrm.example', 'agent')"
            ),
            {"u": AUDITOR},
        )
        conn.execute(
            text(
                "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
                "VALUES (:u, 'read', 'change_log', :a)"
            ),
            {"u": AUDITOR, "a": A0},
        )
    conn.execute(text("SAVEPOINT example"))
    try:
        for user, table, op, pick, where_to in steps:
            _check_step(conn, user, table, op, pick, where_to)
    finally:
        conn.execute(text("ROLLBACK TO SAVEPOINT example"))


def _check_step(
    conn: Connection, user: uuid.UUID, table: str, op: str, pick: int, where_to: int
) -> None:
    if op == "insert":
        _check_insert(conn, user, table, where_to)
        return
    if op == "hard_delete" and table not in HARD_DELETABLE:
        table = HARD_DELETABLE[pick % 2]
    actor = USERS[user]
    ids = list(conn.execute(text(f"SELECT id FROM {table} ORDER BY id")).scalars())
    row_id = ids[pick % len(ids)]
    dispensaries = list(
        conn.execute(text("SELECT id FROM dispensary_profiles ORDER BY name")).scalars()
    )
    orders = list(conn.execute(text("SELECT id FROM orders ORDER BY id")).scalars())
    target = (orders if table == "order_items" else dispensaries)[where_to % 2]
    if op == "restore":
        # Something to restore: as the table owner (not through the API), delete it first.
        conn.execute(
            text(f"UPDATE {table} SET deleted_at = now() WHERE id = :i AND deleted_at IS NULL"),
            {"i": row_id},
        )
    before = _q(conn, f"SELECT to_jsonb(t) FROM {table} AS t WHERE id = :i", i=row_id)
    privileges = _snapshot(conn)
    last_log = _q(conn, "SELECT coalesce(max(id), 0) FROM change_log")
    sql, params = _statement(op, table, user, target)
    changes = {"order_id": str(target)} if "order_id = :t" in sql else {}
    if "dispensary_id = :t" in sql:
        changes = {"dispensary_id": str(target)}
    if ":u" in sql:
        changes = {
            ("assigned_agent_id" if table == "dispensary_profiles" else "agent_id"): str(user)
        }
    expected = _expected(conn, actor, table, op, before, changes, user)

    act_as(conn, user)
    outcome = _run(conn, sql, {"i": row_id, **params})
    reset_role(conn)
    after = _q(conn, f"SELECT to_jsonb(t) FROM {table} AS t WHERE id = :i", i=row_id)
    went_through = outcome not in ("refused", 0)
    step_name = f"{actor} {op} {table} ({before.get('id')})"
    if before.get("deleted_at") is not None:
        # Soft-deleted: out of everyone's reach but an admin's (and, until its transaction
        # ends, the deleter's, which this one transaction does not end).
        if actor != "admin" and before.get("deleted_by") != str(user):
            expected = False
        elif op not in ("restore", "hard_delete"):
            expected = went_through
    assert went_through == expected, f"{step_name}: model {expected}, db {went_through}"
    if not went_through:
        assert after == before, f"{step_name}: refused but changed"
    assert _snapshot(conn) == privileges, f"{step_name}: privileges moved"
    new_logs = conn.execute(
        text("SELECT record_id, changed_by, operation::text FROM change_log WHERE id > :n"),
        {"n": last_log},
    ).all()
    if went_through and after != before:
        assert len(new_logs) == 1, f"{step_name}: {new_logs}"
        record, actor_id, operation = new_logs[0]
        assert (record, actor_id) == (row_id, user), step_name
        assert operation == _logged_operation(op, before), step_name
    else:
        assert new_logs == [], f"{step_name}: logged without a change"
    for viewer, role in USERS.items():
        if role == "admin":
            continue
        act_as(conn, viewer)
        hidden = _q(
            conn,
            f"SELECT count(*) FROM {table} "
            "WHERE deleted_at IS NOT NULL AND deleted_by IS DISTINCT FROM :v",
            v=viewer,
        )
        reset_role(conn)
        assert hidden == 0, f"{role} sees soft-deleted {table} rows"
