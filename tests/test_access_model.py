"""The access model (crm_schema/access_model.py, docs/access-model.md), checked case by case.

For each actor, a world is built around the acting user X (its rows, another agent's rows at
X's dispensary and elsewhere, overrides, role defaults, log rows); then every relation x
command x row kind is run through the API role exactly as PostgREST runs it (SET LOCAL ROLE
and request.jwt.claims), each in a savepoint, and the outcome must be exactly the model's:
allowed, with the row changed as asked and one change-log row naming X, or refused, with
the row unchanged. Then every column's privileges, and every way of moving a row out of
scope.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from crm_schema import access_model as m
from tests.helpers import act_as, reset_role

X = uuid.UUID("00000000-0000-4000-8000-0000000000a1")  # the acting user
B = uuid.UUID("00000000-0000-4000-8000-0000000000b1")  # another agent
M = uuid.UUID("00000000-0000-4000-8000-0000000000c1")  # another manager
A0 = uuid.UUID("00000000-0000-4000-8000-0000000000d1")  # another admin
NEW_USER = uuid.UUID("00000000-0000-4000-8000-0000000000e1")  # signed up, no profile yet

ROLE_OF = {
    "manager": "manager",
    "delegate": "manager",
    "admin": "admin",
    "deleted": "admin",
}
GRANTS = {
    "auditor": "('read', 'change_log', true, NULL)",
    "expired": "('read', 'change_log', true, now() - interval '1 hour')",
    "denied": "('update', 'order', false, NULL)",
    "delegate": "('manage', 'permission', true, NULL)",
}
REFUSED = "refused"


@dataclass
class World:
    actor: str
    ids: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return ROLE_OF.get(self.actor, "agent")


def _one(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar()


def _user(conn: Connection, user: uuid.UUID, role: str) -> None:
    conn.execute(text("INSERT INTO auth.users (id) VALUES (:u)"), {"u": user})
    conn.execute(
        text(
            "INSERT INTO profiles (id, email, full_name, role) "
            "VALUES (:u, :e, 'User', CAST(:r AS user_role))"
        ),
        {"u": user, "e": f"{user.hex[-4:]}@okcrm.example", "r": role},
    )


def build_world(conn: Connection, actor: str) -> World:
    """As the table owner: X (with the actor's role, state and overrides) and everyone else."""
    world = World(actor)
    _user(conn, X, world.role)
    _user(conn, B, "agent")
    _user(conn, M, "manager")
    _user(conn, A0, "admin")
    conn.execute(text("INSERT INTO auth.users (id) VALUES (:u)"), {"u": NEW_USER})
    if actor == "inactive":
        conn.execute(text("UPDATE profiles SET is_active = false WHERE id = :x"), {"x": X})
    if actor == "deleted":
        conn.execute(text("UPDATE profiles SET deleted_at = now() WHERE id = :x"), {"x": X})
    if actor in GRANTS:
        conn.execute(
            text(
                "INSERT INTO user_permissions (user_id, permission, resource, granted, "
                "expires_at, created_at, granted_by) SELECT :x, p::permission_type, "
                "r::resource_type, g, e::timestamptz, now() - interval '1 day', :a FROM (VALUES "
                f"{GRANTS[actor]}) AS v(p, r, g, e)"
            ),
            {"x": X, "a": A0},
        )
    other_role = "agent" if world.role != "agent" else "manager"
    q = lambda sql, **p: _one(conn, sql, **p)  # noqa: E731 - a short local helper
    ids: dict[str, dict[str, Any]] = {}
    ids["profiles"] = {"self": X, "other": B}
    dx = q(
        "INSERT INTO dispensary_profiles (name, assigned_agent_id) VALUES ('DX', :x) RETURNING id",
        x=X,
    )
    db = q(
        "INSERT INTO dispensary_profiles (name, assigned_agent_id) VALUES ('DB', :b) RETURNING id",
        b=B,
    )
    ids["dispensary_profiles"] = {"own": dx, "elsewhere": db}
    product = q(
        "INSERT INTO products (name, sku, category, unit_price) "
        "VALUES ('Okie Kush', 'OK-1', 'flower', 20) RETURNING id"
    )
    ids["products"] = {"any": product}
    places = {"own": (dx, X), "at_mine": (dx, B), "elsewhere": (db, B)}
    ids["orders"], ids["order_items"], ids["communications"] = {}, {}, {}
    for kind, (disp, agent) in places.items():
        order = q(
            "INSERT INTO orders (dispensary_id, agent_id) VALUES (:d, :a) RETURNING id",
            d=disp,
            a=agent,
        )
        ids["orders"][kind] = order
        ids["order_items"][kind] = q(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
            "VALUES (:o, :p, 1, 20) RETURNING id",
            o=order,
            p=product,
        )
        ids["communications"][kind] = q(
            "INSERT INTO communications (dispensary_id, agent_id, type) "
            "VALUES (:d, :a, 'call') RETURNING id",
            d=disp,
            a=agent,
        )
    task = (
        "INSERT INTO tasks (title, created_by, assigned_to, dispensary_id) "
        "VALUES ('T', :c, :a, :d) RETURNING id"
    )
    ids["tasks"] = {
        "own": q(task, c=X, a=X, d=dx),
        "assigned": q(task, c=M, a=X, d=dx),
        "elsewhere": q(task, c=B, a=B, d=db),
    }
    grant = (
        "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
        "VALUES (:u, 'export', 'report', :a) RETURNING id"
    )
    ids["user_permissions"] = {"self": q(grant, u=X, a=A0), "other": q(grant, u=B, a=A0)}
    default = (
        "INSERT INTO role_permissions (role, permission, resource) "
        "VALUES (CAST(:r AS user_role), 'export', 'system') RETURNING id"
    )
    ids["role_permissions"] = {
        "own_role": q(default, r=world.role),
        "other_role": q(default, r=other_role),
    }
    activity = "INSERT INTO user_activity_log (user_id, activity) VALUES (:u, 'view') RETURNING id"
    ids["user_activity_log"] = {"self": q(activity, u=X), "other": q(activity, u=B)}
    ids["recent_activity"] = ids["user_activity_log"]
    ids["active_profiles"] = ids["user_effective_permissions"] = ids["profiles"]
    ids["dispensary_summary"] = {"own": dx, "elsewhere": db}
    ids["migration_log"] = {
        "any": q(
            "INSERT INTO migration_log (migration_date, started_at, executed_by, "
            "verification_status) VALUES (current_date, now(), 'dba', 'PASS') RETURNING id"
        )
    }
    ids["change_log"] = ids["record_change_history"] = {"any": None}
    world.ids = ids
    return world


KEYS = {"user_effective_permissions": "user_id"}
# Rows that would stop a hard delete by foreign key, removed first by the owner.
BLOCKERS = {
    "dispensary_profiles": "DELETE FROM orders WHERE dispensary_id = :i",
    "products": "DELETE FROM order_items WHERE product_id = :i",
}
# relation -> (a content column, the value an update writes)
UPDATES = {
    "profiles": ("full_name", "'Renamed'"),
    "dispensary_profiles": ("notes", "'checked'"),
    "products": ("description", "'checked'"),
    "orders": ("notes", "'checked'"),
    "order_items": ("quantity", "7"),
    "communications": ("subject", "'checked'"),
    "tasks": ("status", "'completed'"),
    "role_permissions": ("permission", "'delete'"),
    "user_permissions": ("reason", "'checked'"),
    "user_activity_log": ("metadata", "'{\"x\": 1}'"),
    "change_log": ("changed_by", "NULL"),
    "migration_log": ("notes", "'checked'"),
}


def _insert(world: World, relation: str, kind: str) -> tuple[str, dict[str, Any]]:
    ids = world.ids
    dx, db = ids["dispensary_profiles"]["own"], ids["dispensary_profiles"]["elsewhere"]
    place = {"own": (dx, X), "at_mine": (dx, B), "elsewhere": (db, B)}
    if relation == "profiles":  # for a user of Supabase Auth that has no profile yet
        return (
            "INSERT INTO profiles (id, email) VALUES (:u, 'new@okcrm.example') RETURNING id",
            {"u": NEW_USER},
        )
    if relation == "dispensary_profiles":
        agent = X if kind == "own" else B
        return (
            "INSERT INTO dispensary_profiles (name, assigned_agent_id) VALUES ('New', :a) "
            "RETURNING id",
            {"a": agent},
        )
    if relation == "products":
        return (
            "INSERT INTO products (name, sku, category, unit_price) "
            "VALUES ('New', 'OK-NEW', 'vape', 9) RETURNING id",
            {},
        )
    if relation in ("orders", "communications"):
        disp, agent = place[kind]
        extra = (", type", ", 'call'") if relation == "communications" else ("", "")
        return (
            f"INSERT INTO {relation} (dispensary_id, agent_id{extra[0]}) "
            f"VALUES (:d, :a{extra[1]}) RETURNING id",
            {"d": disp, "a": agent},
        )
    if relation == "order_items":
        return (
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
            "VALUES (:o, :p, 2, 20) RETURNING id",
            {"o": ids["orders"][kind], "p": ids["products"]["any"]},
        )
    if relation == "tasks":
        if kind == "assigned":  # created by someone else: only possible naming created_by
            return (
                "INSERT INTO tasks (title, created_by, assigned_to, dispensary_id) "
                "VALUES ('New', :m, :x, :d) RETURNING id",
                {"m": M, "x": X, "d": dx},
            )
        who, disp = (X, dx) if kind == "own" else (B, db)
        return (
            "INSERT INTO tasks (title, assigned_to, dispensary_id) VALUES ('New', :a, :d) "
            "RETURNING id",
            {"a": who, "d": disp},
        )
    if relation == "user_permissions":
        return (
            "INSERT INTO user_permissions (user_id, permission, resource) "
            "VALUES (:u, 'read', 'report') RETURNING id",
            {"u": X if kind == "self" else B},
        )
    if relation == "role_permissions":
        role = (
            world.role if kind == "own_role" else ("agent" if world.role != "agent" else "manager")
        )
        return (
            "INSERT INTO role_permissions (role, permission, resource) "
            "VALUES (CAST(:r AS user_role), 'delete', 'system') RETURNING id",
            {"r": role},
        )
    if relation == "user_activity_log":
        return (
            "INSERT INTO user_activity_log (user_id, activity) VALUES (:u, 'view') RETURNING id",
            {"u": X if kind == "self" else B},
        )
    if relation == "change_log":
        return (
            "INSERT INTO change_log (table_name, record_id, operation) "
            "VALUES ('orders', gen_random_uuid(), 'insert') RETURNING id",
            {},
        )
    return (
        "INSERT INTO migration_log (migration_date, started_at, executed_by, "
        "verification_status) VALUES (current_date, now(), 'me', 'PASS') RETURNING id",
        {},
    )


def _as_actor(conn: Connection, actor: str) -> None:
    if actor == "anon":
        act_as(conn, None, "anon")
    elif actor == "service_role":
        act_as(conn, None, "service_role")
    else:
        act_as(conn, X)


def _row(conn: Connection, relation: str, row_id: Any) -> Any:
    if row_id is None:
        return _one(conn, f"SELECT count(*) FROM {relation}")
    return _one(conn, f"SELECT to_jsonb(t) FROM {relation} AS t WHERE id = :i", i=row_id)


def _log_count(conn: Connection, row_id: Any, actor: uuid.UUID | None) -> int:
    return int(
        _one(
            conn,
            "SELECT count(*) FROM change_log WHERE record_id = :r "
            "AND changed_by IS NOT DISTINCT FROM :a",
            r=row_id,
            a=actor,
        )
    )


def _run(conn: Connection, sql: str, params: dict[str, Any]) -> Any:
    """The statement's rows (RETURNING) or rowcount; REFUSED on insufficient_privilege."""
    conn.execute(text("SAVEPOINT statement"))
    try:
        result = conn.execute(text(sql), params)
        outcome = result.scalar() if result.returns_rows else result.rowcount
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":
            raise
        conn.execute(text("ROLLBACK TO SAVEPOINT statement"))
        return REFUSED
    conn.execute(text("RELEASE SAVEPOINT statement"))
    return outcome


def observe(conn: Connection, world: World, relation: str, command: str, kind: str) -> str:
    """Run one case; return "allowed" or "refused", checking the row effect either way."""
    actor = world.actor
    actor_id = None if actor in ("anon", "service_role") else X
    row_id = world.ids[relation].get(kind)
    conn.execute(text("SAVEPOINT one_case"))
    try:
        if command == "restore":
            conn.execute(
                text(f"UPDATE {relation} SET deleted_at = now() WHERE id = :i"), {"i": row_id}
            )
        if command == "hard_delete" and relation in BLOCKERS:
            conn.execute(text(BLOCKERS[relation]), {"i": row_id})  # what a foreign key would stop
        if command == "select":
            _as_actor(conn, actor)
            key = KEYS.get(relation, "id")
            where = "" if row_id is None else f" WHERE {key} = :i"
            outcome = _run(conn, f"SELECT count(*) FROM {relation}{where}", {"i": row_id})
            reset_role(conn)
            if outcome in (REFUSED, 0):
                return REFUSED
            total = _row(conn, relation, None) if row_id is None else None
            expected = total if row_id is None else (66 if key == "user_id" else 1)
            assert outcome == expected, (relation, kind, outcome)
            return "allowed"
        before = _row(conn, relation, row_id)
        logged = _log_count(conn, row_id, actor_id) if row_id else 0
        _as_actor(conn, actor)
        if command == "insert":
            sql, params = _insert(world, relation, kind)
            new_id = _run(conn, sql, params)
            reset_role(conn)
            if new_id in (REFUSED, None):
                return REFUSED
            assert _row(conn, relation, new_id) is not None
            if relation in m.SOFT_DELETE_TABLES or relation.endswith("permissions"):
                assert _log_count(conn, new_id, actor_id) == 1, (relation, "insert logged")
            return "allowed"
        if command == "hard_delete":
            sql = f"DELETE FROM {relation} WHERE " + ("id = :i" if row_id else "true")
        elif command == "update":
            column, value = UPDATES[relation]
            sql = f"UPDATE {relation} SET {column} = {value} WHERE " + (
                "id = :i" if row_id else "true"
            )
        else:
            value = "now()" if command == "soft_delete" else "NULL"
            sql = f"UPDATE {relation} SET deleted_at = {value} WHERE id = :i"
        done = _run(conn, sql, {"i": row_id})
        reset_role(conn)
        after = _row(conn, relation, row_id)
        if done in (REFUSED, 0):
            assert after == before, (relation, command, kind, "changed though refused")
            return REFUSED
        if command == "hard_delete":
            assert after is None
        elif command == "update":
            column, _ = UPDATES[relation]
            assert after[column] != before[column], (relation, "not written")
        else:
            assert (after["deleted_at"] is None) == (command == "restore")
        if relation in m.SOFT_DELETE_TABLES or relation.endswith("permissions"):
            assert _log_count(conn, row_id, actor_id) == logged + 1, (relation, command, "log")
        return "allowed"
    finally:
        conn.execute(text("ROLLBACK TO SAVEPOINT one_case"))
        reset_role(conn)


@pytest.mark.parametrize("actor", list(m.ACTORS))
def test_every_relation_command_and_row_kind(conn: Connection, actor: str) -> None:
    world = build_world(conn, actor)
    mismatches, cases = [], 0
    for relation, kinds in m.ROW_KINDS.items():
        for command in m.commands(relation):
            for kind in kinds:
                expected = "allowed" if m.allowed(actor, relation, command, kind) else REFUSED
                observed = observe(conn, world, relation, command, kind)
                cases += 1
                if observed != expected:
                    mismatches.append(
                        f"{relation} {command} {kind}: model {expected}, db {observed}"
                    )
    assert cases == sum(len(m.commands(r)) * len(k) for r, k in m.ROW_KINDS.items())
    assert mismatches == [], f"{actor}:\n" + "\n".join(mismatches)


def _columns(conn: Connection, table: str) -> list[str]:
    return list(
        conn.execute(
            text(
                "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            ),
            {"t": f"public.{table}"},
        ).scalars()
    )


@pytest.mark.parametrize("table", sorted(m.WRITABLE))
def test_every_column_is_writable_exactly_as_the_model_says(conn: Connection, table: str) -> None:
    """API users hold INSERT / UPDATE on exactly the model's columns: identity and
    bookkeeping columns are the database's. And a real UPDATE of each column on the agent's
    own row is allowed or refused accordingly."""
    insert, update = m.WRITABLE[table]
    wrong = []
    for column in _columns(conn, table):
        for privilege, writable in (("INSERT", insert), ("UPDATE", update)):
            held = _one(
                conn,
                "SELECT has_column_privilege('authenticated', CAST(:t AS regclass), :c, :p)",
                t=f"public.{table}",
                c=column,
                p=privilege,
            )
            if held != (column in writable):
                wrong.append(f"{privilege} {column}: held {held}")
    assert wrong == []
    world = build_world(conn, "agent" if table != "products" else "admin")
    kind = {"profiles": "self", "products": "any", "role_permissions": "own_role"}.get(
        table, "self" if table == "user_permissions" else "own"
    )
    if table in ("role_permissions", "user_permissions"):
        world = World("admin", world.ids)
    row_id = world.ids[table][kind]
    for column in _columns(conn, table):
        conn.execute(text("SAVEPOINT col"))
        act_as(conn, A0 if table in ("role_permissions", "user_permissions", "products") else X)
        outcome = _run(conn, f"UPDATE {table} SET {column} = {column} WHERE id = :i", {"i": row_id})
        reset_role(conn)
        conn.execute(text("ROLLBACK TO SAVEPOINT col"))
        if table == "user_permissions" and kind == "self":
            continue  # the admin's own-row case is the row rule's, not the column's
        if (outcome == REFUSED) == (column in update):
            wrong.append(f"UPDATE {column}: {outcome}")
    assert wrong == []


# (table, own row kind, column, value): each moves the agent's own row out of its scope, or
# someone else's into it.
MOVES = [
    ("orders", "agent_id", "B"),
    ("orders", "dispensary_id", "DB"),
    ("communications", "agent_id", "B"),
    ("communications", "dispensary_id", "DB"),
    ("tasks", "assigned_to", "B"),
    ("tasks", "dispensary_id", "DB"),
    ("dispensary_profiles", "assigned_agent_id", "B"),
    ("order_items", "order_id", "O_AT_MINE"),
    ("order_items", "order_id", "O_ELSEWHERE"),
]


@pytest.mark.parametrize(("table", "column", "target"), MOVES)
def test_an_agent_cannot_move_its_row_out_of_scope(
    conn: Connection, table: str, column: str, target: str
) -> None:
    world = build_world(conn, "agent")
    value = {
        "B": B,
        "DB": world.ids["dispensary_profiles"]["elsewhere"],
        "O_AT_MINE": world.ids["orders"]["at_mine"],
        "O_ELSEWHERE": world.ids["orders"]["elsewhere"],
    }[target]
    row_id = world.ids[table]["own"]
    before = _row(conn, table, row_id)
    act_as(conn, X)
    conn.execute(text("SAVEPOINT move"))
    outcome = _run(
        conn, f"UPDATE {table} SET {column} = :v WHERE id = :i", {"v": value, "i": row_id}
    )
    conn.execute(text("ROLLBACK TO SAVEPOINT move"))
    reset_role(conn)
    assert outcome in (REFUSED, 0)
    assert _row(conn, table, row_id) == before
    # ... while an edit that stays in scope goes through
    act_as(conn, X)
    column_, value_ = UPDATES[table] if table != "dispensary_profiles" else ("notes", "'x'")
    assert _run(conn, f"UPDATE {table} SET {column_} = {value_} WHERE id = :i", {"i": row_id}) == 1
