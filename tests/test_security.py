"""Phases 4-5 (revisions 0006, 0007): Row Level Security as the only wall between a signed-in
Supabase user and the data. Every actor x relation x command, escalation attempts, soft
delete, default permissions and the views."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from crm_schema import migrations
from tests import sample_data as s
from tests.helpers import act_as, reset_role

DENIED = "denied"
ALL = "all"  # every row the table owner sees
NEW_USER = uuid.UUID("00000000-0000-4000-8000-0000000000ee")
PRODUCT_SPARE = uuid.UUID("20000000-0000-4000-8000-0000000000ff")

ACTORS: dict[str, tuple[uuid.UUID | None, str]] = {
    "anon": (None, "anon"),
    "agent_a": (s.AGENT_A, "authenticated"),
    "agent_b": (s.AGENT_B, "authenticated"),
    "manager": (s.MANAGER, "authenticated"),
    "admin": (s.ADMIN, "authenticated"),
    "service_role": (None, "service_role"),
}


@pytest.fixture
def world(conn: Connection) -> Connection:
    """The sample CRM plus a spare product, a permission override and some activity."""
    s.load(conn)
    conn.execute(text("INSERT INTO auth.users (id) VALUES (:u)"), {"u": NEW_USER})
    conn.execute(
        text(
            "INSERT INTO products (id, name, sku, category, unit_price) "
            "VALUES (:p, 'Spare Cart', 'OK-SP-999', 'vape', 30)"
        ),
        {"p": PRODUCT_SPARE},
    )
    conn.execute(
        text(
            "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
            "VALUES (:b, 'export', 'report', :admin)"
        ),
        {"b": s.AGENT_B, "admin": s.ADMIN},
    )
    conn.execute(
        text(
            "INSERT INTO migration_log (migration_date, started_at, executed_by, "
            "verification_status) VALUES (current_date, now(), 'dba', 'PASS')"
        )
    )
    for user in (s.AGENT_A, s.AGENT_A, s.AGENT_B):
        conn.execute(
            text("SELECT public.log_user_activity(:u, 'view', 'dispensary', NULL, '{}')"),
            {"u": user},
        )
    return conn


def _current_partition(conn: Connection) -> str:
    return str(
        conn.execute(
            text("SELECT 'user_activity_log_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')")
        ).scalar()
    )


# relation -> (INSERT, UPDATE, DELETE). :me is the actor's id, NULL for anon/service_role.
STATEMENTS: dict[str, tuple[str, str, str]] = {
    "profiles": (
        "INSERT INTO profiles (id, email) VALUES (:new_user, 'new@cakeoklahoma.com')",
        "UPDATE profiles SET full_name = full_name WHERE id = :agent_a",
        "DELETE FROM profiles WHERE id = :manager",
    ),
    "dispensary_profiles": (
        "INSERT INTO dispensary_profiles (name, assigned_agent_id) VALUES ('New Leaf', :me)",
        "UPDATE dispensary_profiles SET name = name WHERE id = :disp_a",
        "DELETE FROM dispensary_profiles WHERE id = :disp_unassigned",
    ),
    "products": (
        "INSERT INTO products (name, sku, category, unit_price) "
        "VALUES ('Okie Pre-roll', 'OK-PR-123', 'pre_roll', 8)",
        "UPDATE products SET name = name WHERE id = :flower",
        "DELETE FROM products WHERE id = :spare",
    ),
    "orders": (
        "INSERT INTO orders (dispensary_id, agent_id) VALUES (:disp_a, :me)",
        "UPDATE orders SET notes = notes WHERE id = :order_a",
        "DELETE FROM orders WHERE id = :order_b",
    ),
    "order_items": (
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
        "VALUES (:order_a, :flower, 1, 22)",
        "UPDATE order_items SET quantity = quantity WHERE order_id = :order_a",
        "DELETE FROM order_items WHERE order_id = :order_a",
    ),
    "communications": (
        "INSERT INTO communications (dispensary_id, agent_id, type) VALUES (:disp_a, :me, 'call')",
        "UPDATE communications SET subject = subject WHERE dispensary_id = :disp_a",
        "DELETE FROM communications WHERE dispensary_id = :disp_a",
    ),
    "tasks": (
        "INSERT INTO tasks (title, assigned_to) VALUES ('Follow up', :me)",
        "UPDATE tasks SET title = title WHERE dispensary_id = :disp_a",
        "DELETE FROM tasks WHERE dispensary_id = :disp_a",
    ),
    "role_permissions": (
        "INSERT INTO role_permissions (role, permission, resource) "
        "VALUES ('agent', 'export', 'report')",
        "UPDATE role_permissions SET permission = permission "
        "WHERE role = 'agent' AND permission = 'read' AND resource = 'product'",
        "DELETE FROM role_permissions "
        "WHERE role = 'agent' AND permission = 'read' AND resource = 'product'",
    ),
    "user_permissions": (
        "INSERT INTO user_permissions (user_id, permission, resource) "
        "VALUES (:manager, 'read', 'report')",
        "UPDATE user_permissions SET reason = reason",
        "DELETE FROM user_permissions",
    ),
    "user_activity_log": (
        "INSERT INTO user_activity_log (activity) VALUES ('view')",
        "UPDATE user_activity_log SET metadata = metadata",
        "DELETE FROM user_activity_log",
    ),
    "change_log": (
        "INSERT INTO change_log (table_name, record_id, operation) VALUES ('x', :me, 'insert')",
        "UPDATE change_log SET changed_by = changed_by",
        "DELETE FROM change_log",
    ),
    "migration_log": (
        "INSERT INTO migration_log (migration_date, started_at, executed_by, "
        "verification_status) VALUES (current_date, now(), 'me', 'PASS')",
        "UPDATE migration_log SET notes = notes",
        "DELETE FROM migration_log",
    ),
}
PARTITIONS = ("<current partition>", "user_activity_overflow")
VIEWS = (
    "active_profiles",
    "user_effective_permissions",
    "recent_activity",
    "dispensary_summary",
    "record_change_history",
)
READ_ONLY = (DENIED, DENIED, DENIED)


def _expect(select: Any, insert: Any, update: Any, delete: Any) -> tuple[Any, ...]:
    return (select, insert, update, delete)


# actor -> relation -> (select rows, insert, update rows, delete rows); 1 for a row inserted.
EXPECTED: dict[str, dict[str, tuple[Any, ...]]] = {
    "agent_a": {
        "profiles": _expect(4, DENIED, 1, DENIED),
        "dispensary_profiles": _expect(1, 1, 1, DENIED),
        "products": _expect(3, DENIED, 0, DENIED),
        "orders": _expect(1, 1, 1, DENIED),
        "order_items": _expect(2, 1, 2, DENIED),
        "communications": _expect(1, 1, 1, DENIED),
        "tasks": _expect(1, 1, 1, DENIED),
        "role_permissions": _expect(ALL, DENIED, 0, 0),
        "user_permissions": _expect(0, DENIED, 0, 0),
        "user_activity_log": _expect(2, *READ_ONLY),
        "change_log": _expect(0, *READ_ONLY),
        "migration_log": _expect(0, *READ_ONLY),
        "active_profiles": _expect(4, *READ_ONLY),
        "user_effective_permissions": _expect(66, *READ_ONLY),
        "recent_activity": _expect(2, *READ_ONLY),
        "dispensary_summary": _expect(1, *READ_ONLY),
        "record_change_history": _expect(0, *READ_ONLY),
    },
    "agent_b": {
        "profiles": _expect(4, DENIED, 0, DENIED),
        "dispensary_profiles": _expect(1, 1, 0, DENIED),
        "products": _expect(3, DENIED, 0, DENIED),
        "orders": _expect(1, DENIED, 0, DENIED),
        "order_items": _expect(1, DENIED, 0, DENIED),
        "communications": _expect(1, DENIED, 0, DENIED),
        "tasks": _expect(1, 1, 0, DENIED),
        "role_permissions": _expect(ALL, DENIED, 0, 0),
        "user_permissions": _expect(1, DENIED, 0, 0),
        "user_activity_log": _expect(1, *READ_ONLY),
        "change_log": _expect(0, *READ_ONLY),
        "migration_log": _expect(0, *READ_ONLY),
        "active_profiles": _expect(4, *READ_ONLY),
        "user_effective_permissions": _expect(66, *READ_ONLY),
        "recent_activity": _expect(1, *READ_ONLY),
        "dispensary_summary": _expect(1, *READ_ONLY),
        "record_change_history": _expect(0, *READ_ONLY),
    },
    "manager": {
        "profiles": _expect(4, DENIED, 0, DENIED),
        "dispensary_profiles": _expect(3, 1, 1, DENIED),
        "products": _expect(3, DENIED, 0, DENIED),
        "orders": _expect(2, 1, 1, DENIED),
        "order_items": _expect(3, 1, 2, DENIED),
        "communications": _expect(2, 1, 1, DENIED),
        "tasks": _expect(2, 1, 1, DENIED),
        "role_permissions": _expect(ALL, DENIED, 0, 0),
        "user_permissions": _expect(1, DENIED, 0, 0),
        "user_activity_log": _expect(3, *READ_ONLY),
        "change_log": _expect(0, *READ_ONLY),  # deleted content: admins and auditors only
        "migration_log": _expect(0, *READ_ONLY),
        "active_profiles": _expect(4, *READ_ONLY),
        "user_effective_permissions": _expect(4 * 66, *READ_ONLY),
        "recent_activity": _expect(3, *READ_ONLY),
        "dispensary_summary": _expect(3, *READ_ONLY),
        "record_change_history": _expect(0, *READ_ONLY),
    },
}
EXPECTED["admin"] = {
    **{table: _expect(ALL, 1, 1, 1) for table in STATEMENTS},
    "profiles": _expect(4, DENIED, 1, 1),  # profiles come from Supabase Auth's sign-up
    "order_items": _expect(3, 1, 2, 2),
    "user_activity_log": _expect(3, *READ_ONLY),
    "change_log": _expect(ALL, *READ_ONLY),
    "migration_log": _expect(ALL, *READ_ONLY),
    **{view: EXPECTED["manager"][view] for view in VIEWS},
    "record_change_history": _expect(ALL, *READ_ONLY),
}
EXPECTED["service_role"] = {**EXPECTED["admin"], "profiles": _expect(4, 1, 1, 1)}
EXPECTED["anon"] = {name: (DENIED,) * 4 for name in (*STATEMENTS, *VIEWS)}
for actor in EXPECTED:
    EXPECTED[actor].update({p: (DENIED,) * 4 for p in PARTITIONS})


# insufficient_privilege; and for views that cannot be written at all, "cannot insert into
# view" (object_not_in_prerequisite_state).
REFUSALS = {"42501", "55000"}


def _attempt(conn: Connection, sql: str, params: dict[str, Any], counting: bool) -> Any:
    """Run one statement in a savepoint: rows seen/affected, or DENIED when refused."""
    conn.execute(text("SAVEPOINT attempt"))
    try:
        result = conn.execute(text(sql), params)
        outcome = result.scalar() if counting else result.rowcount
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) not in REFUSALS:
            raise
        outcome = DENIED
    conn.execute(text("ROLLBACK TO SAVEPOINT attempt"))
    return outcome


def _observed(conn: Connection, relation: str, me: uuid.UUID | None) -> tuple[Any, ...]:
    params = {
        "me": me,
        "new_user": NEW_USER,
        "agent_a": s.AGENT_A,
        "manager": s.MANAGER,
        "disp_a": s.DISPENSARY_A,
        "disp_unassigned": s.DISPENSARY_UNASSIGNED,
        "flower": s.PRODUCT_FLOWER,
        "spare": PRODUCT_SPARE,
        "order_a": s.ORDER_A,
        "order_b": s.ORDER_B,
    }
    name = _current_partition(conn) if relation == "<current partition>" else relation
    column = conn.execute(
        text(
            "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum = 1"
        ),
        {"t": f"public.{name}"},
    ).scalar()
    writes = STATEMENTS.get(relation) or (
        f"INSERT INTO public.{name} SELECT * FROM public.{name} LIMIT 1",
        f"UPDATE public.{name} SET {column} = {column}",
        f"DELETE FROM public.{name}",
    )
    select = _attempt(conn, f"SELECT count(*) FROM public.{name}", params, counting=True)
    return (select, *(_attempt(conn, sql, params, counting=False) for sql in writes))


def _owner_count(conn: Connection, relation: str) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM public.{relation}")).scalar_one())


@pytest.mark.parametrize("actor", sorted(ACTORS))
def test_access_matrix(world: Connection, actor: str) -> None:
    """Exactly who can do what: every relation (partitions and views included) x command."""
    user, role = ACTORS[actor]
    mismatches = []
    for relation, expected in EXPECTED[actor].items():
        if ALL in expected:
            total = _owner_count(world, relation)
            expected = tuple(total if e == ALL else e for e in expected)
        act_as(world, user, role)
        observed = _observed(world, relation, user)
        reset_role(world)
        if observed != expected:
            mismatches.append(f"{relation}: expected {expected}, observed {observed}")
    assert mismatches == [], f"{actor} (select, insert, update, delete):\n" + "\n".join(mismatches)


def test_matrix_covers_every_relation_in_public(world: Connection) -> None:
    relations = set(
        world.execute(
            text(
                "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
                "AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition "
                "AND c.relname <> 'alembic_version'"
            )
        ).scalars()
    )
    assert relations == set(STATEMENTS) | set(VIEWS)


# --- escalation attempts: each fails and changes nothing ---------------------------------


def _refused(conn: Connection, sql: str, **params: Any) -> str:
    """Run ``sql`` in a savepoint; return how it was refused ('' if it was not)."""
    conn.execute(text("SAVEPOINT escalation"))
    try:
        result = conn.execute(text(sql), params)
        outcome = "" if result.rowcount else "no rows"
    except DBAPIError as exc:
        outcome = str(exc.orig).splitlines()[0]
    conn.execute(text("ROLLBACK TO SAVEPOINT escalation"))
    return outcome


def _snapshot(conn: Connection) -> tuple[Any, ...]:
    reset_role(conn)
    return tuple(
        sorted(map(str, conn.execute(text(f"SELECT to_jsonb(t) FROM public.{t} AS t")).scalars()))
        for t in ("profiles", "role_permissions", "user_permissions", "change_log")
    )


ESCALATIONS = {
    "own role to admin": "UPDATE profiles SET role = 'admin' WHERE id = :me",
    "reactivate or deactivate oneself": "UPDATE profiles SET is_active = false WHERE id = :me",
    "grant oneself a permission": (
        "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
        "VALUES (:me, 'manage', 'system', :me)"
    ),
    "edit role defaults": ("UPDATE role_permissions SET resource = 'system' WHERE role = 'agent'"),
    "add a role default": (
        "INSERT INTO role_permissions (role, permission, resource) "
        "VALUES ('agent', 'manage', 'permission')"
    ),
    "edit change-log rows": "UPDATE change_log SET changed_by = NULL",
    "delete change-log rows": "DELETE FROM change_log",
    "write a change-log row": (
        "INSERT INTO change_log (table_name, record_id, operation, changed_by) "
        "VALUES ('profiles', :me, 'update', :me)"
    ),
    "log activity as someone else": (
        "SELECT public.log_user_activity(:other, 'login', 'system', NULL, '{}')"
    ),
    "read another user's activity through a partition": (
        "SELECT count(*) FROM public.user_activity_overflow"
    ),
    "soft-delete oneself": "UPDATE profiles SET deleted_at = now() WHERE id = :me",
    "edit another user's profile": "UPDATE profiles SET full_name = 'x' WHERE id = :other",
}


@pytest.mark.parametrize("attempt", sorted(ESCALATIONS))
def test_escalation_attempt_fails_and_changes_nothing(world: Connection, attempt: str) -> None:
    before = _snapshot(world)
    act_as(world, s.AGENT_A)
    outcome = _refused(world, ESCALATIONS[attempt], me=s.AGENT_A, other=s.AGENT_B)
    assert outcome, f"{attempt}: went through"
    assert _snapshot(world) == before


@pytest.mark.parametrize(
    ("table", "change"),
    [
        ("orders", f"dispensary_id = '{s.DISPENSARY_B}'"),
        ("orders", f"agent_id = '{s.AGENT_B}'"),
        ("communications", f"agent_id = '{s.AGENT_B}'"),
    ],
    ids=["order_to_dispensary_b", "order_to_agent_b", "call_to_agent_b"],
)
def test_agent_cannot_move_its_rows_to_another_territory(
    world: Connection, table: str, change: str
) -> None:
    """Agent A's own order or call, at its own dispensary: it may edit it, but not hand it to
    agent B, nor move an order to agent B's dispensary (both as in the baseline)."""
    act_as(world, s.AGENT_A)
    mine = "WHERE agent_id = :me AND dispensary_id = :disp"
    content = {"orders": "notes", "communications": "subject"}[table]
    edit = f"UPDATE {table} SET {content} = 'checked' {mine}"
    assert _refused(world, edit, me=s.AGENT_A, disp=s.DISPENSARY_A) == ""
    move = f"UPDATE {table} SET {change} {mine}"
    assert "row-level security" in _refused(world, move, me=s.AGENT_A, disp=s.DISPENSARY_A)


def test_permission_manager_cannot_raise_own_rights(world: Connection) -> None:
    """Even a holder of manage on permissions cannot grant itself or edit its own role."""
    world.execute(
        text(
            "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
            "VALUES (:m, 'manage', 'permission', :admin)"
        ),
        {"m": s.MANAGER, "admin": s.ADMIN},
    )
    act_as(world, s.MANAGER)
    assert _refused(
        world,
        "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
        "VALUES (:me, 'manage', 'system', :me)",
        me=s.MANAGER,
    )
    assert _refused(
        world,
        "INSERT INTO role_permissions (role, permission, resource) "
        "VALUES ('manager', 'manage', 'system')",
    )
    # ... but may manage other people's permissions, stamped with its own id.
    assert not _refused(
        world,
        "INSERT INTO user_permissions (user_id, permission, resource) "
        "VALUES (:agent, 'export', 'order')",
        agent=s.AGENT_A,
    )
    assert _refused(
        world,
        "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
        "VALUES (:agent, 'export', 'order', :admin)",
        agent=s.AGENT_A,
        admin=s.ADMIN,
    )  # granted_by cannot be forged


def test_only_admins_delete_users(world: Connection) -> None:
    """Even with update and delete on profiles, a non-admin cannot switch another user off by
    soft-deleting it (an admin so deleted could not sign in to undo it)."""
    world.execute(
        text(
            "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
            "VALUES (:b, 'update', 'profile', :admin), (:b, 'delete', 'profile', :admin)"
        ),
        {"b": s.AGENT_B, "admin": s.ADMIN},
    )
    act_as(world, s.AGENT_B)
    assert not _refused(world, "UPDATE profiles SET full_name = 'Ada' WHERE id = :a", a=s.AGENT_A)
    for user in (s.ADMIN, s.AGENT_A):
        outcome = _refused(world, "UPDATE profiles SET deleted_at = now() WHERE id = :u", u=user)
        assert "only an admin can delete or restore a profile" in outcome


# --- soft delete ---------------------------------------------------------------------------


def _visible(conn: Connection, who: uuid.UUID, sql: str, **params: Any) -> Any:
    act_as(conn, who)
    value = conn.execute(text(sql), params).scalar()
    reset_role(conn)
    return value


def test_soft_delete_hides_from_agents_and_admin_restores(engine: Engine) -> None:
    count = "SELECT count(*) FROM dispensary_profiles WHERE id = :d"
    with engine.begin() as conn:
        s.load(conn)
    with engine.begin() as conn:
        act_as(conn, s.ADMIN)
        done = conn.execute(
            text("UPDATE dispensary_profiles SET deleted_at = now() WHERE id = :d"),
            {"d": s.DISPENSARY_A},
        )
        assert done.rowcount == 1
    with engine.begin() as conn:
        assert _visible(conn, s.AGENT_A, count, d=s.DISPENSARY_A) == 0
        assert _visible(conn, s.MANAGER, count, d=s.DISPENSARY_A) == 0
        assert _visible(conn, s.ADMIN, count, d=s.DISPENSARY_A) == 1
        # Related rows keep their reference (and the agent still sees its order).
        order_dispensary = "SELECT dispensary_id FROM orders WHERE id = :o"
        assert _visible(conn, s.AGENT_A, order_dispensary, o=s.ORDER_A) == s.DISPENSARY_A
        deleted_by = conn.execute(
            text("SELECT deleted_by FROM dispensary_profiles WHERE id = :d"),
            {"d": s.DISPENSARY_A},
        ).scalar()
        assert deleted_by == s.ADMIN
    with engine.begin() as conn:
        act_as(conn, s.ADMIN)
        conn.execute(
            text("UPDATE dispensary_profiles SET deleted_at = NULL WHERE id = :d"),
            {"d": s.DISPENSARY_A},
        )
    with engine.begin() as conn:
        assert _visible(conn, s.AGENT_A, count, d=s.DISPENSARY_A) == 1


def test_agent_soft_deletes_its_own_rows_and_then_cannot_see_them(engine: Engine) -> None:
    count = "SELECT count(*) FROM communications WHERE agent_id = :a"
    with engine.begin() as conn:
        s.load(conn)
        act_as(conn, s.AGENT_A)
        done = conn.execute(
            text("UPDATE communications SET deleted_at = now() WHERE agent_id = :a"),
            {"a": s.AGENT_A},
        )
        assert done.rowcount == 1
    with engine.begin() as conn:
        assert _visible(conn, s.AGENT_A, count, a=s.AGENT_A) == 0
        assert _visible(conn, s.ADMIN, count, a=s.AGENT_A) == 1
        act_as(conn, s.AGENT_A)  # and cannot restore what it can no longer see
        undone = conn.execute(
            text("UPDATE communications SET deleted_at = NULL WHERE agent_id = :a"),
            {"a": s.AGENT_A},
        )
        assert undone.rowcount == 0


def test_soft_delete_needs_the_delete_permission(world: Connection) -> None:
    act_as(world, s.AGENT_A)  # agents may update orders but not delete them
    assert "row-level security" in _refused(
        world, "UPDATE orders SET deleted_at = now() WHERE id = :o", o=s.ORDER_A
    )


def test_who_wrote_a_role_default_cannot_be_forged(world: Connection) -> None:
    act_as(world, s.ADMIN)
    stamped = (
        "INSERT INTO role_permissions (role, permission, resource, created_by) "
        "VALUES ('agent', 'export', 'report', :other)"
    )
    assert "permission denied" in _refused(world, stamped, other=s.MANAGER)
    created_by = world.execute(
        text(
            "INSERT INTO role_permissions (role, permission, resource) "
            "VALUES ('agent', 'export', 'report') RETURNING created_by"
        )
    ).scalar()
    assert created_by == s.ADMIN
    rewrite = "UPDATE role_permissions SET created_by = :other WHERE created_by = :me"
    assert "permission denied" in _refused(world, rewrite, other=s.MANAGER, me=s.ADMIN)
    # What the default says stays editable by those who manage permissions.
    assert not _refused(
        world,
        "UPDATE role_permissions SET permission = 'read' WHERE created_by = :me",
        me=s.ADMIN,
    )


def test_removing_an_order_line_is_an_edit_of_the_order(engine: Engine) -> None:
    """The baseline let an agent delete the lines of its orders; soft-deleting one needs
    update on the order, not delete (which agents do not have)."""
    lines = "SELECT count(*) FROM order_items WHERE order_id = :o"
    remove = "UPDATE order_items SET deleted_at = now() WHERE order_id = :o"
    with engine.begin() as conn:
        s.load(conn)
        before = _visible(conn, s.AGENT_A, lines, o=s.ORDER_A)
        assert before > 0
        act_as(conn, s.AGENT_B)  # another agent cannot even reach the lines
        assert conn.execute(text(remove), {"o": s.ORDER_A}).rowcount == 0
        reset_role(conn)
        act_as(conn, s.AGENT_A)
        assert conn.execute(text(remove), {"o": s.ORDER_A}).rowcount == before
        reset_role(conn)
    with engine.begin() as conn:
        assert _visible(conn, s.AGENT_A, lines, o=s.ORDER_A) == 0
        assert _visible(conn, s.ADMIN, lines, o=s.ORDER_A) == before  # kept for the audit trail


def test_explicit_deny_beats_the_role_under_rls(world: Connection) -> None:
    world.execute(
        text(
            "INSERT INTO user_permissions (user_id, permission, resource, granted, granted_by) "
            "VALUES (:a, 'read', 'order', false, :admin)"
        ),
        {"a": s.AGENT_A, "admin": s.ADMIN},
    )
    assert _visible(world, s.AGENT_A, "SELECT count(*) FROM orders") == 0
    assert _visible(world, s.AGENT_B, "SELECT count(*) FROM orders") == 1


def test_expired_grant_stops_working_under_rls(world: Connection) -> None:
    world.execute(
        text(
            "INSERT INTO user_permissions "
            "(user_id, permission, resource, expires_at, created_at, granted_by) "
            "VALUES (:a, 'read', 'change_log', now() - interval '1 minute', "
            "now() - interval '1 day', :admin)"
        ),
        {"a": s.AGENT_A, "admin": s.ADMIN},
    )
    assert _visible(world, s.AGENT_A, "SELECT count(*) FROM change_log") == 0
    world.execute(text("UPDATE user_permissions SET expires_at = now() + interval '1 day'"))
    assert _visible(world, s.AGENT_A, "SELECT count(*) FROM change_log") > 0


def test_inactive_user_loses_access(world: Connection) -> None:
    world.execute(text("UPDATE profiles SET is_active = false WHERE id = :m"), {"m": s.MANAGER})
    assert _visible(world, s.MANAGER, "SELECT count(*) FROM orders") == 0


def test_inactive_user_reads_but_cannot_edit_its_own_profile(world: Connection) -> None:
    own = "SELECT count(*) FROM profiles WHERE id = :me"
    rename = "UPDATE profiles SET full_name = 'Renamed' WHERE id = :me"
    act_as(world, s.AGENT_A)  # while active, the owner may edit its profile
    assert not _refused(world, rename, me=s.AGENT_A)
    reset_role(world)
    world.execute(text("UPDATE profiles SET is_active = false WHERE id = :a"), {"a": s.AGENT_A})
    assert _visible(world, s.AGENT_A, own, me=s.AGENT_A) == 1
    act_as(world, s.AGENT_A)
    assert _refused(world, rename, me=s.AGENT_A) == "no rows"


# --- default data and views ----------------------------------------------------------------


def test_default_role_permissions_match_the_brief(world: Connection) -> None:
    def allowed(user: uuid.UUID, permission: str, resource: str) -> bool:
        return bool(
            world.execute(
                text(
                    "SELECT public.user_has_permission(:u, CAST(:p AS permission_type), "
                    "CAST(:r AS resource_type))"
                ),
                {"u": user, "p": permission, "r": resource},
            ).scalar()
        )

    resources = world.execute(text("SELECT unnest(enum_range(NULL::resource_type))")).scalars()
    for resource in list(resources):  # all but the change log, which holds deleted content
        assert allowed(s.MANAGER, "read", resource) == (resource != "change_log"), resource
    assert allowed(s.MANAGER, "export", "report")
    assert not allowed(s.MANAGER, "manage", "permission")
    for resource in ("dispensary", "order", "communication", "task"):
        assert allowed(s.AGENT_A, "read", resource)
        assert allowed(s.AGENT_A, "update", resource)
    assert allowed(s.AGENT_A, "read", "product")
    assert not allowed(s.AGENT_A, "update", "product")
    assert not allowed(s.AGENT_A, "delete", "order")
    assert not allowed(s.AGENT_A, "read", "change_log")


def test_defaults_downgrade_removes_only_its_own_rows(empty_db_url: URL, make_engine: Any) -> None:
    engine = make_engine(empty_db_url)
    config = migrations.make_config(empty_db_url)
    command.upgrade(config, "head")
    with engine.begin() as conn:
        total = conn.execute(text("SELECT count(*) FROM role_permissions")).scalar()
        # An administrator replaces one default and adds a new one.
        conn.execute(
            text(
                "DELETE FROM role_permissions WHERE role = 'agent' AND permission = 'read' "
                "AND resource = 'product'"
            )
        )
        conn.execute(
            text(
                "INSERT INTO role_permissions (role, permission, resource) VALUES "
                "('agent', 'read', 'product'), ('agent', 'export', 'report')"
            )
        )
    command.upgrade(config, "head")  # nothing to do, and no duplicates
    # 0007 commits together with 0006; 0006's downgrade leaves role_permissions' rows alone.
    command.downgrade(config, "0005_phase3_functions_triggers")
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT role::text, permission::text, resource::text FROM role_permissions")
        ).all()
        assert sorted(map(tuple, left)) == [
            ("agent", "export", "report"),
            ("agent", "read", "product"),
        ]
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM role_permissions")).scalar() == total + 1


API_PRIVILEGES = """
SELECT c.relname, r.role, p.privilege
  FROM pg_class c
 CROSS JOIN unnest(ARRAY['anon', 'authenticated']) AS r(role)
 CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',
                         'TRIGGER', 'USAGE']) AS p(privilege)
 WHERE c.relnamespace = 'public'::regnamespace
   AND CASE WHEN c.relkind = 'S' THEN p.privilege IN ('SELECT', 'UPDATE', 'USAGE')
                AND has_sequence_privilege(r.role, c.oid, p.privilege)
            WHEN c.relkind IN ('r', 'p', 'v', 'm') THEN p.privilege <> 'USAGE'
                AND has_table_privilege(r.role, c.oid, p.privilege)
       END
UNION ALL
SELECT f.oid::regprocedure::text, r.role, 'EXECUTE'
  FROM pg_proc f CROSS JOIN unnest(ARRAY['anon', 'authenticated']) AS r(role)
 WHERE f.pronamespace = 'public'::regnamespace AND f.prorettype <> 'trigger'::regtype
   AND has_function_privilege(r.role, f.oid, 'EXECUTE')
"""


def test_supabase_default_privileges_are_taken_back(
    db_url: URL, empty_db_url: URL, make_engine: Any
) -> None:
    """Supabase's default privileges give the API roles everything on each new table, view,
    sequence and function in public. Migrated there, anon and authenticated must end up with
    exactly what they hold on plain PostgreSQL, where the access matrix above is proven."""
    config = migrations.make_config(empty_db_url)
    command.upgrade(config, "0001_supabase_compat")  # the API roles exist
    supabase = make_engine(empty_db_url)
    with supabase.begin() as conn:
        for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
            conn.execute(
                text(
                    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON {kind} "
                    "TO anon, authenticated, service_role"
                )
            )
    command.upgrade(config, "head")
    with supabase.connect() as conn:
        on_supabase = set(map(tuple, conn.execute(text(API_PRIVILEGES))))
    with make_engine(db_url).connect() as conn:
        on_postgres = set(map(tuple, conn.execute(text(API_PRIVILEGES))))
    extra = sorted(on_supabase - on_postgres)
    assert extra == [], "\n".join(map(str, extra))
    assert ("orders", "authenticated", "SELECT") in on_postgres


# Relations the partition maintenance makes after the migration, each of which holds rows of
# every user and, queried directly, meets none of user_activity_log's policies.
MAINTAINED_PARTITIONS = (
    "public.user_activity_log_2040_01",  # ensure_activity_log_partitions / partitions ensure
    "public.user_activity_overflow",  # the catch-all
    "activity_archive.user_activity_log_2020_01",  # partitions archive, without --drop
)


def test_a_signed_in_user_reads_no_partition_directly(world: Connection) -> None:
    """GET /rest/v1/user_activity_log_2040_01 would read a partition past its parent's RLS:
    every partition, made by the migration or by the maintenance later, and every archived
    month, is refused to the API roles, even where default privileges grant new tables in
    public to them (Supabase's) or to PUBLIC. Through the parent each sees its own rows."""
    world.execute(
        text(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            "GRANT ALL ON TABLES TO PUBLIC, anon, authenticated, service_role"
        )
    )
    world.execute(text("SELECT public.ensure_activity_log_partitions(0, '2040-01-01')"))
    world.execute(text("SELECT public.ensure_activity_log_partitions(0, '2020-01-01')"))
    for when in ("2040-01-15", "2020-01-15", "2100-01-01"):  # one row in each
        world.execute(
            text(
                "INSERT INTO user_activity_log (user_id, activity, created_at) "
                "VALUES (:b, 'view', CAST(:when AS timestamptz))"
            ),
            {"b": s.AGENT_B, "when": when},
        )
    world.execute(text("SELECT * FROM public.archive_activity_log_partitions()"))
    partitions = [*MAINTAINED_PARTITIONS, f"public.{_current_partition(world)}"]
    for name in partitions:
        assert world.execute(text(f"SELECT count(*) FROM {name}")).scalar() is not None
    of_b = "SELECT count(*) FROM user_activity_log WHERE user_id = :b"
    b_rows = world.execute(text(of_b), {"b": s.AGENT_B}).scalar()
    assert b_rows == 3  # world's, 2040's and the catch-all's; 2020's is archived
    for user, role, sees_b in (
        (s.AGENT_A, "authenticated", 0),
        (s.MANAGER, "authenticated", b_rows),  # a manager reads every user's activity
        (None, "anon", DENIED),
    ):
        act_as(world, user, role)
        for name in partitions:
            refused = _refused(world, f"SELECT count(*) FROM {name}")
            assert "permission denied" in refused, f"{role} {user} read {name}"
        assert _attempt(world, of_b, {"b": s.AGENT_B}, counting=True) == sees_b
        reset_role(world)


def test_views_are_security_invoker(world: Connection) -> None:
    options = dict(
        world.execute(
            text(
                "SELECT c.relname, c.reloptions FROM pg_class c "
                "WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace"
            )
        ).all()
    )
    assert set(options) == set(VIEWS)
    assert all(opts == ["security_invoker=true"] for opts in options.values()), options


def test_effective_permissions_explain_themselves(world: Connection) -> None:
    act_as(world, s.AGENT_B)
    rows = dict(
        world.execute(
            text(
                "SELECT permission::text || ' ' || resource::text, source "
                "FROM user_effective_permissions WHERE allowed"
            )
        ).all()
    )
    reset_role(world)
    assert rows["export report"] == "override"
    assert rows["read product"] == "role default"
    assert "manage system" not in rows


def test_dispensary_summary_adds_up(world: Connection) -> None:
    act_as(world, s.AGENT_A)
    row = world.execute(
        text("SELECT order_count, revenue, open_tasks FROM dispensary_summary WHERE id = :d"),
        {"d": s.DISPENSARY_A},
    ).one()
    assert tuple(row) == (1, 505, 1)


def test_record_change_history_names_the_actor(world: Connection) -> None:
    act_as(world, s.ADMIN)
    world.execute(text("UPDATE orders SET notes = 'checked' WHERE id = :o"), {"o": s.ORDER_A})
    row = world.execute(
        text(
            "SELECT operation::text, changed_by_email, changed_columns FROM record_change_history"
            " WHERE table_name = 'orders' AND record_id = :o ORDER BY changed_at DESC, id DESC"
        ),
        {"o": s.ORDER_A},
    ).first()
    assert row is not None
    assert tuple(row) == ("update", s.ADMIN_EMAIL, ["notes"])


# --- policies evaluate their helpers once per query --------------------------------------


def test_agent_query_evaluates_permission_helper_once(world: Connection) -> None:
    act_as(world, s.AGENT_A)
    plan = "\n".join(
        world.execute(
            text("EXPLAIN (COSTS OFF, VERBOSE) SELECT * FROM orders WHERE status = 'confirmed'")
        ).scalars()
    )
    reset_role(world)
    assert "InitPlan" in plan
    per_row = [line for line in plan.splitlines() if "Filter:" in line]
    assert per_row, plan
    assert not any("current_user_has_permission" in line for line in per_row), plan
    assert not any("auth.uid()" in line for line in per_row), plan
