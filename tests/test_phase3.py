"""Phase 3 (revision 0005): permission and audit functions, and the triggers that track
edits, soft deletes and every change."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

from crm_schema import migrations
from crm_schema.runbook.baseline import CRM_TABLES
from tests import sample_data as s
from tests.helpers import act_as, reset_role

SEED_PERMISSION_TEST = """
SELECT public.user_has_permission(
    (SELECT id FROM public.profiles WHERE email = 'stokes@cakeoklahoma.com'),
    'read'::permission_type,
    'profile'::resource_type
);
"""
SEED_ACTIVITY_TEST = """
SELECT public.log_user_activity(
    (SELECT id FROM public.profiles WHERE email = 'stokes@cakeoklahoma.com'),
    'login'::activity_type,
    'system'::resource_type,
    NULL,
    '{"test": true}'::jsonb
);
"""


def q(connection: Connection, sql: str, **params: Any) -> Any:
    return connection.execute(text(sql), params).scalar()


@pytest.fixture
def crm(conn: Connection) -> Connection:
    """The sample CRM, with the change log of loading it cleared (as the table owner)."""
    s.load(conn)
    conn.execute(text("DELETE FROM change_log"))
    return conn


@pytest.fixture
def bare(crm: Connection) -> Connection:
    """The sample CRM without phase 5's default role permissions: each test sets its own."""
    crm.execute(text("DELETE FROM role_permissions"))
    crm.execute(text("DELETE FROM change_log"))
    return crm


def test_seed_function_checks_verbatim(crm: Connection) -> None:
    assert q(crm, SEED_PERMISSION_TEST) is True
    log_id = q(crm, SEED_ACTIVITY_TEST)
    assert isinstance(log_id, uuid.UUID)
    row = crm.execute(
        text("SELECT user_id, activity, resource, metadata FROM user_activity_log WHERE id = :i"),
        {"i": log_id},
    ).one()
    assert tuple(row) == (s.ADMIN, "login", "system", {"test": True})


# --- user_has_permission: every branch -----------------------------------------------------


def has(
    connection: Connection, user: uuid.UUID | None, permission: str | None, resource: str | None
) -> bool:
    return bool(
        q(
            connection,
            "SELECT public.user_has_permission(:u, CAST(:p AS permission_type), "
            "CAST(:r AS resource_type))",
            u=user,
            p=permission,
            r=resource,
        )
    )


def role_default(connection: Connection, role: str, permission: str, resource: str) -> None:
    connection.execute(
        text(
            "INSERT INTO role_permissions (role, permission, resource) VALUES "
            "(CAST(:ro AS user_role), CAST(:p AS permission_type), CAST(:r AS resource_type)) "
            "ON CONFLICT DO NOTHING"
        ),
        {"ro": role, "p": permission, "r": resource},
    )


def override(
    connection: Connection,
    user: uuid.UUID,
    permission: str,
    resource: str,
    granted: bool,
    expires: str | None = None,
) -> None:
    connection.execute(
        text(
            "INSERT INTO user_permissions "
            "(user_id, permission, resource, granted, expires_at, created_at) "
            "VALUES (:u, CAST(:p AS permission_type), CAST(:r AS resource_type), :g, "
            "CAST(:e AS timestamptz), "
            "least(now(), CAST(:e AS timestamptz) - interval '1 day'))"
        ),
        {"u": user, "p": permission, "r": resource, "g": granted, "e": expires},
    )


@pytest.mark.parametrize(
    ("user", "permission", "resource"),
    [(None, "read", "order"), (s.ADMIN, None, "order"), (s.ADMIN, "read", None)],
)
def test_null_input_is_false(bare: Connection, user: Any, permission: Any, resource: Any) -> None:
    assert has(bare, user, permission, resource) is False


def test_unknown_inactive_and_deleted_users_have_nothing(bare: Connection) -> None:
    assert has(bare, uuid.uuid4(), "read", "order") is False
    assert has(bare, s.ADMIN, "manage", "system") is True
    bare.execute(text("UPDATE profiles SET is_active = false WHERE id = :i"), {"i": s.ADMIN})
    assert has(bare, s.ADMIN, "read", "profile") is False
    bare.execute(
        text("UPDATE profiles SET is_active = true, deleted_at = now() WHERE id = :i"),
        {"i": s.ADMIN},
    )
    assert has(bare, s.ADMIN, "read", "profile") is False


def test_admin_may_do_everything_without_any_rows(bare: Connection) -> None:
    assert q(bare, "SELECT count(*) FROM role_permissions") == 0
    for permission in ("read", "create", "update", "delete", "export", "manage"):
        assert has(bare, s.ADMIN, permission, "permission")


def test_role_default_and_manage_implication(bare: Connection) -> None:
    assert has(bare, s.AGENT_A, "read", "order") is False
    role_default(bare, "agent", "read", "order")
    assert has(bare, s.AGENT_A, "read", "order") is True
    assert has(bare, s.AGENT_A, "update", "order") is False
    role_default(bare, "agent", "manage", "task")
    for permission in ("read", "create", "update", "delete", "export"):
        assert has(bare, s.AGENT_A, permission, "task")
    assert has(bare, s.MANAGER, "read", "order") is False  # defaults are per role


def test_override_deny_beats_role_default_and_allow_adds(bare: Connection) -> None:
    role_default(bare, "agent", "read", "order")
    override(bare, s.AGENT_A, "read", "order", granted=False)
    override(bare, s.AGENT_A, "export", "order", granted=True)
    assert has(bare, s.AGENT_A, "read", "order") is False
    assert has(bare, s.AGENT_B, "read", "order") is True  # only the overridden user
    assert has(bare, s.AGENT_A, "export", "order") is True


def test_expired_overrides_stop_applying(bare: Connection) -> None:
    role_default(bare, "agent", "read", "order")
    override(bare, s.AGENT_A, "export", "order", granted=True, expires="2000-01-01")
    override(bare, s.AGENT_A, "read", "order", granted=False, expires="2000-01-01")
    assert has(bare, s.AGENT_A, "export", "order") is False  # expired allow
    assert has(bare, s.AGENT_A, "read", "order") is True  # expired deny: the role decides


def test_grant_expires_without_anyone_touching_it(engine: Engine) -> None:
    with engine.begin() as connection:
        s.load(connection)
        # A few seconds of validity, so a loaded machine cannot expire it before the check.
        left = connection.execute(
            text(
                "INSERT INTO user_permissions (user_id, permission, resource, expires_at) "
                "VALUES (:u, 'export', 'report', clock_timestamp() + interval '3 seconds') "
                "RETURNING extract(epoch FROM expires_at - clock_timestamp())"
            ),
            {"u": s.AGENT_A},
        ).scalar_one()
    with engine.connect() as connection:
        assert has(connection, s.AGENT_A, "export", "report") is True
    time.sleep(float(left) + 0.2)  # waiting for the expiry, not measuring anything
    with engine.connect() as connection:
        assert has(connection, s.AGENT_A, "export", "report") is False


def test_manage_overrides(bare: Connection) -> None:
    override(bare, s.AGENT_A, "manage", "dispensary", granted=True)
    assert has(bare, s.AGENT_A, "delete", "dispensary") is True
    # An exact deny beats an allowed manage.
    override(bare, s.AGENT_A, "delete", "product", granted=False)
    override(bare, s.AGENT_A, "manage", "product", granted=True)
    assert has(bare, s.AGENT_A, "delete", "product") is False
    assert has(bare, s.AGENT_A, "update", "product") is True
    # A denied manage takes away the role's manage, but not the role's explicit grants.
    role_default(bare, "agent", "manage", "task")
    role_default(bare, "agent", "read", "task")
    override(bare, s.AGENT_A, "manage", "task", granted=False)
    assert has(bare, s.AGENT_A, "update", "task") is False
    assert has(bare, s.AGENT_A, "read", "task") is True
    assert has(bare, s.AGENT_B, "update", "task") is True


def test_api_user_may_only_ask_about_themselves(bare: Connection) -> None:
    act_as(bare, s.AGENT_A)
    assert q(bare, "SELECT public.current_user_has_permission('read', 'order')") is False
    assert has(bare, s.AGENT_A, "read", "order") is False
    bare.execute(text("SAVEPOINT other"))
    with pytest.raises(DBAPIError, match="only check your own permissions"):
        has(bare, s.AGENT_B, "read", "order")
    bare.execute(text("ROLLBACK TO SAVEPOINT other"))
    act_as(bare, s.ADMIN)
    assert has(bare, s.AGENT_B, "read", "order") is False  # admins may ask about anyone


@pytest.mark.parametrize(("schema", "definer"), [("private", True), ("public", False)])
def test_permission_function_is_stable_security_definer_with_fixed_path(
    crm: Connection, schema: str, definer: bool
) -> None:
    """SECURITY DEFINER in private, which PostgREST does not expose; the seed's public name
    is a SECURITY INVOKER entry point into it."""
    row = crm.execute(
        text(
            "SELECT provolatile, prosecdef, proconfig FROM pg_proc "
            f"WHERE oid = '{schema}.user_has_permission(uuid, permission_type, resource_type)'"
            "::regprocedure"
        )
    ).one()
    assert tuple(row) == ("s", definer, ['search_path=""'])


# --- log_user_activity -------------------------------------------------------------------


def log(
    connection: Connection,
    user: uuid.UUID | None,
    activity: str = "view",
    metadata: str | None = "{}",
) -> Any:
    return q(
        connection,
        "SELECT public.log_user_activity(:u, CAST(:a AS activity_type), 'dispensary', NULL, "
        "CAST(:m AS jsonb))",
        u=user,
        a=activity,
        m=metadata,
    )


def test_login_updates_profile_bookkeeping_only(crm: Connection) -> None:
    log(crm, s.AGENT_A, "login")
    log(crm, s.AGENT_A, "login")
    row = crm.execute(
        text(
            "SELECT login_count, last_login_at IS NOT NULL, version, edit_count FROM profiles "
            "WHERE id = :i"
        ),
        {"i": s.AGENT_A},
    ).one()
    assert tuple(row) == (2, True, 1, 0)  # logins are not edits
    assert q(crm, "SELECT count(*) FROM change_log WHERE record_id = :i", i=s.AGENT_A) == 0


def test_api_user_cannot_forge_its_login_bookkeeping(crm: Connection) -> None:
    login = "SELECT login_count, last_login_at, version FROM profiles WHERE id = :i"
    act_as(crm, s.AGENT_A)
    crm.execute(text("SAVEPOINT forge"))
    with pytest.raises(ProgrammingError, match="permission denied for table profiles"):
        crm.execute(
            text("UPDATE profiles SET login_count = 999, last_login_at = now() WHERE id = :i"),
            {"i": s.AGENT_A},
        )
    crm.execute(text("ROLLBACK TO SAVEPOINT forge"))
    reset_role(crm)
    assert tuple(crm.execute(text(login), {"i": s.AGENT_A}).one()) == (0, None, 1)
    act_as(crm, s.AGENT_A)
    log(crm, None, "login")  # the way a login is recorded
    reset_role(crm)
    count, last_login, version = crm.execute(text(login), {"i": s.AGENT_A}).one()
    assert (count, last_login is not None, version) == (1, True, 1)


def test_signed_in_user_logs_only_for_itself(crm: Connection) -> None:
    act_as(crm, s.AGENT_A)
    own = log(crm, None)
    explicit = log(crm, s.AGENT_A)
    crm.execute(text("SAVEPOINT forge"))
    with pytest.raises(DBAPIError, match="only log activity for yourself"):
        log(crm, s.AGENT_B)
    crm.execute(text("ROLLBACK TO SAVEPOINT forge"))
    reset_role(crm)
    users = crm.execute(text("SELECT id, user_id FROM user_activity_log")).all()
    assert dict(users) == {own: s.AGENT_A, explicit: s.AGENT_A}


def test_anon_cannot_log(crm: Connection) -> None:
    act_as(crm, None, role="anon")
    with pytest.raises(ProgrammingError, match="permission denied for function"):
        log(crm, None)


def test_service_role_logs_for_anyone(crm: Connection) -> None:
    act_as(crm, None, role="service_role")
    log_id = log(crm, s.AGENT_B)
    reset_role(crm)
    assert q(crm, "SELECT user_id FROM user_activity_log WHERE id = :i", i=log_id) == s.AGENT_B


@pytest.mark.parametrize(
    ("headers", "ip", "agent"),
    [
        # The right-most hop is the one the platform's proxy appended; the rest the client
        # wrote. X-Real-IP is the client's to write and is ignored.
        (
            {"x-forwarded-for": "10.9.9.9, 203.0.113.7", "user-agent": "CRM/2.1"},
            "203.0.113.7",
            "CRM/2.1",
        ),
        ({"x-forwarded-for": "2001:db8::5"}, "2001:db8::5", None),
        ({"x-real-ip": "198.51.100.1"}, None, None),
        ({"x-forwarded-for": "not-an-ip", "user-agent": "curl"}, None, "curl"),
        ({}, None, None),
    ],
)
def test_ip_and_user_agent_come_from_request_headers(
    crm: Connection, headers: dict[str, str], ip: str | None, agent: str | None
) -> None:
    crm.execute(text("SELECT set_config('request.headers', :h, true)"), {"h": json.dumps(headers)})
    log_id = log(crm, s.AGENT_A)
    row = crm.execute(
        text("SELECT host(ip_address), user_agent FROM user_activity_log WHERE id = :i"),
        {"i": log_id},
    ).one()
    assert tuple(row) == (ip, agent)


@pytest.mark.parametrize(
    ("user", "activity", "metadata", "error"),
    [
        ("unknown", "view", "{}", "no user with id"),
        (s.AGENT_A, None, "{}", "activity must not be NULL"),
        (s.AGENT_A, "view", "[1, 2]", "metadata must be a JSON object, not array"),
    ],
)
def test_bad_activity_input_is_refused_and_writes_nothing(
    crm: Connection, user: Any, activity: Any, metadata: str, error: str
) -> None:
    user_id = uuid.uuid4() if user == "unknown" else user
    crm.execute(text("SAVEPOINT bad"))
    with pytest.raises(DBAPIError, match=error):
        log(crm, user_id, activity, metadata)
    crm.execute(text("ROLLBACK TO SAVEPOINT bad"))
    assert q(crm, "SELECT count(*) FROM user_activity_log") == 0


def test_null_metadata_is_an_empty_object(crm: Connection) -> None:
    log_id = log(crm, s.AGENT_A, metadata=None)
    assert q(crm, "SELECT metadata FROM user_activity_log WHERE id = :i", i=log_id) == {}


# --- change log, edit tracking, soft delete ----------------------------------------------

# table -> (INSERT statement returning id, a content column to edit, a new value)
ROW_MAKERS: dict[str, tuple[str, str, str]] = {
    "profiles": (
        # Profiles come from Supabase Auth: the sign-up trigger makes them (see below).
        "UPDATE auth.users SET email = 'new.agent@cakeoklahoma.com' WHERE id = :new_user "
        "RETURNING id",
        "full_name",
        "'Nova Agent'",
    ),
    "dispensary_profiles": (
        "INSERT INTO dispensary_profiles (name) VALUES ('Green Country Goods') RETURNING id",
        "city",
        "'Muskogee'",
    ),
    "products": (
        "INSERT INTO products (name, sku, category, unit_price) "
        "VALUES ('Red Dirt Gummies', 'OK-ED-777', 'edible', 12.00) RETURNING id",
        "unit_price",
        "13.50",
    ),
    "orders": (
        f"INSERT INTO orders (dispensary_id, agent_id) VALUES ('{s.DISPENSARY_A}', "
        f"'{s.AGENT_A}') RETURNING id",
        "notes",
        "'rush delivery'",
    ),
    "order_items": (
        f"INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES "
        f"('{s.ORDER_A}', '{s.PRODUCT_FLOWER}', 4, 22.00) RETURNING id",
        "quantity",
        "5",
    ),
    "communications": (
        f"INSERT INTO communications (dispensary_id, agent_id, type, subject) VALUES "
        f"('{s.DISPENSARY_A}', '{s.AGENT_A}', 'email', 'Menu update') RETURNING id",
        "subject",
        "'New menu'",
    ),
    "tasks": (
        f"INSERT INTO tasks (title, dispensary_id) VALUES ('Call buyer', '{s.DISPENSARY_A}') "
        "RETURNING id",
        "priority",
        "'urgent'",
    ),
}


def changes(connection: Connection, record: Any) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in connection.execute(
            text(
                "SELECT operation::text, changed_by, changed_columns FROM change_log "
                "WHERE record_id = :r ORDER BY id"
            ),
            {"r": record},
        )
    ]


@pytest.mark.parametrize("table", sorted(ROW_MAKERS))
def test_change_log_records_each_operation_once(crm: Connection, table: str) -> None:
    new_user = uuid.uuid4()
    crm.execute(text("INSERT INTO auth.users (id) VALUES (:i)"), {"i": new_user})
    insert, column, value = ROW_MAKERS[table]
    if table == "profiles":  # Supabase Auth writes auth.users, here on the admin's request
        claims = json.dumps({"sub": str(s.ADMIN)})
        crm.execute(text("SELECT set_config('request.jwt.claims', :c, true)"), {"c": claims})
        record = q(crm, insert, new_user=new_user)
    act_as(crm, s.ADMIN)
    if table != "profiles":
        record = q(crm, insert, new_user=new_user)
    where = {"r": record}
    row = f"SELECT to_jsonb(t) FROM {table} AS t WHERE id = :r"
    states = [q(crm, row, **where)]  # the row after each statement
    for change in (f"{column} = {value}", f"{column} = {value}", "deleted_at = now()"):
        crm.execute(text(f"UPDATE {table} SET {change} WHERE id = :r"), where)  # 2nd: no-op
        states.append(q(crm, row, **where))
    crm.execute(text(f"UPDATE {table} SET deleted_at = NULL WHERE id = :r"), where)
    states.append(q(crm, row, **where))
    crm.execute(text(f"DELETE FROM {table} WHERE id = :r"), where)
    reset_role(crm)
    assert changes(crm, record) == [
        ("insert", s.ADMIN, None),
        ("update", s.ADMIN, [column]),
        ("soft_delete", s.ADMIN, ["deleted_at", "deleted_by"]),
        ("restore", s.ADMIN, ["deleted_at", "deleted_by"]),
        ("delete", s.ADMIN, None),
    ]

    def pick(state: dict[str, Any], *columns: str) -> dict[str, Any]:
        return {c: state[c] for c in columns}

    inserted, updated, _, deleted, restored = states
    values = crm.execute(
        text("SELECT old_values, new_values FROM change_log WHERE record_id = :r ORDER BY id"),
        where,
    ).all()
    assert [tuple(v) for v in values] == [
        (None, inserted),
        (pick(inserted, column), pick(updated, column)),
        (pick(updated, "deleted_at", "deleted_by"), pick(deleted, "deleted_at", "deleted_by")),
        (pick(deleted, "deleted_at", "deleted_by"), pick(restored, "deleted_at", "deleted_by")),
        (restored, None),
    ]
    assert pick(updated, column) != pick(inserted, column)
    assert deleted["deleted_by"] == str(s.ADMIN)
    when = crm.execute(
        text(
            "SELECT bool_and(transaction_id = txid_current()), bool_and(changed_at = now()) "
            "FROM change_log WHERE record_id = :r"
        ),
        where,
    ).one()
    assert tuple(when) == (True, True)  # this transaction, at its time


def test_permission_changes_are_audited(bare: Connection) -> None:
    act_as(bare, s.ADMIN)
    bare.execute(
        text(
            "INSERT INTO user_permissions (user_id, permission, resource) "
            "VALUES (:u, 'export', 'report')"
        ),
        {"u": s.AGENT_A},
    )
    bare.execute(text("UPDATE user_permissions SET granted = false, reason = 'audit finding'"))
    bare.execute(text("DELETE FROM user_permissions"))
    role_default(bare, "manager", "read", "report")
    reset_role(bare)
    rows = bare.execute(
        text(
            "SELECT table_name, operation::text, changed_columns, changed_by FROM change_log "
            "ORDER BY id"
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        ("user_permissions", "insert", None, s.ADMIN),
        ("user_permissions", "update", ["granted", "reason"], s.ADMIN),
        ("user_permissions", "delete", None, s.ADMIN),
        ("role_permissions", "insert", None, s.ADMIN),
    ]


def test_edit_tracking_overrides_what_the_client_sends(crm: Connection) -> None:
    # API users may not even name the bookkeeping columns (they hold no privilege on them):
    # a direct database session sends them here, and the trigger replaces them.
    crm.execute(
        text("SELECT set_config('request.jwt.claims', :c, true)"),
        {"c": json.dumps({"sub": str(s.AGENT_A), "role": "authenticated"})},
    )
    crm.execute(
        text(
            "UPDATE orders SET notes = 'forged', version = 99, edit_count = 0, "
            "updated_by = :other, updated_at = '2000-01-01', deleted_by = :other WHERE id = :o"
        ),
        {"other": s.AGENT_B, "o": s.ORDER_A},
    )
    order = crm.execute(
        text(
            "SELECT version, edit_count, updated_by, updated_at > now() - interval '1 minute', "
            "deleted_by FROM orders WHERE id = :o"
        ),
        {"o": s.ORDER_A},
    ).one()
    assert tuple(order) == (2, 1, s.AGENT_A, True, None)
    assert changes(crm, s.ORDER_A) == [("update", s.AGENT_A, ["notes"])]


BOOKKEEPING = "version, edit_count, updated_at, updated_by, deleted_at, deleted_by"


def forge_bookkeeping_and_check(crm: Connection, table: str, row: Any) -> None:
    read = f"SELECT {BOOKKEEPING} FROM {table} WHERE id = :r"
    before = crm.execute(text(read), {"r": row}).one()
    crm.execute(
        text(
            f"UPDATE {table} SET version = 99, edit_count = 42, updated_at = '2000-01-01', "
            "updated_by = :other, deleted_by = :other WHERE id = :r"
        ),
        {"other": s.AGENT_B, "r": row},
    )
    assert crm.execute(text(read), {"r": row}).one() == before
    assert changes(crm, row) == []


@pytest.mark.parametrize("table", CRM_TABLES)
def test_forged_bookkeeping_alone_changes_nothing(crm: Connection, table: str) -> None:
    """Sent with no real change (a direct session; API users cannot name these columns), the
    bookkeeping and deletion values are put back, nothing is logged, and a live row stays
    live: a forged deleted_by is not a soft delete."""
    forge_bookkeeping_and_check(crm, table, q(crm, f"SELECT min(id::text)::uuid FROM {table}"))


def test_forged_bookkeeping_alone_changes_nothing_on_the_generic_path(crm: Connection) -> None:
    crm.execute(text("ALTER TABLE orders ADD COLUMN courier text"))  # the generic path now
    forge_bookkeeping_and_check(crm, "orders", s.ORDER_A)


def test_a_forged_timestamp_alone_changes_no_permission_row(crm: Connection) -> None:
    read = "SELECT id, updated_at FROM role_permissions ORDER BY id"
    before = crm.execute(text(read)).all()
    crm.execute(text("UPDATE role_permissions SET updated_at = '2000-01-01'"))
    assert crm.execute(text(read)).all() == before
    assert q(crm, "SELECT count(*) FROM change_log") == 0


def test_a_deletion_keeps_its_time_and_author(crm: Connection) -> None:
    signed_in = json.dumps({"sub": str(s.ADMIN), "role": "authenticated"})
    crm.execute(text("SELECT set_config('request.jwt.claims', :c, true)"), {"c": signed_in})
    crm.execute(text("UPDATE orders SET deleted_at = now() WHERE id = :o"), {"o": s.ORDER_A})
    read = "SELECT deleted_at, deleted_by FROM orders WHERE id = :o"
    deleted = crm.execute(text(read), {"o": s.ORDER_A}).one()
    crm.execute(
        text(
            "UPDATE orders SET deleted_at = '2001-01-01', deleted_by = :other, notes = 'later' "
            "WHERE id = :o"
        ),
        {"other": s.AGENT_B, "o": s.ORDER_A},
    )
    assert crm.execute(text(read), {"o": s.ORDER_A}).one() == deleted
    assert deleted.deleted_by == s.ADMIN
    assert changes(crm, s.ORDER_A) == [
        ("soft_delete", s.ADMIN, ["deleted_at", "deleted_by"]),
        ("update", s.ADMIN, ["notes"]),
    ]


@pytest.mark.parametrize(
    "column", ["version", "edit_count", "updated_at", "updated_by", "deleted_at", "deleted_by"]
)
def test_an_insert_through_the_api_cannot_name_a_bookkeeping_column(
    crm: Connection, column: str
) -> None:
    act_as(crm, s.AGENT_A)
    with pytest.raises(ProgrammingError, match="permission denied for table communications"):
        crm.execute(
            text(
                f"INSERT INTO communications (dispensary_id, agent_id, type, {column}) "
                "VALUES (:d, :a, 'call', DEFAULT)"
            ),
            {"d": s.DISPENSARY_A, "a": s.AGENT_A},
        )


def test_an_insert_takes_the_bookkeeping_defaults_and_logs_the_real_actor(
    crm: Connection,
) -> None:
    """No trigger runs before an insert: the columns' defaults fill the bookkeeping, and the
    change log's actor is auth.uid(), not the row's updated_by."""
    act_as(crm, s.AGENT_A)
    new_id = q(
        crm,
        "INSERT INTO communications (dispensary_id, agent_id, type) VALUES (:d, :a, 'call') "
        "RETURNING id",
        d=s.DISPENSARY_A,
        a=s.AGENT_A,
    )
    reset_role(crm)
    inserted = crm.execute(
        text(
            "SELECT version, edit_count, updated_by, updated_at = now(), deleted_at, deleted_by "
            "FROM communications WHERE id = :i"
        ),
        {"i": new_id},
    ).one()
    assert tuple(inserted) == (1, 0, s.AGENT_A, True, None, None)
    assert changes(crm, new_id) == [("insert", s.AGENT_A, None)]


def test_api_user_cannot_write_the_change_log(crm: Connection) -> None:
    act_as(crm, s.ADMIN)
    with pytest.raises(ProgrammingError, match="permission denied for table change_log"):
        crm.execute(
            text(
                "INSERT INTO change_log (table_name, record_id, operation, changed_by) "
                "VALUES ('orders', :i, 'update', :i)"
            ),
            {"i": s.AGENT_B},
        )


def test_id_cannot_change(crm: Connection) -> None:
    with pytest.raises(IntegrityError, match=r"orders\.id and orders\.created_at cannot be"):
        crm.execute(
            text("UPDATE orders SET id = gen_random_uuid() WHERE id = :o"), {"o": s.ORDER_A}
        )


@pytest.mark.parametrize("table", CRM_TABLES)
def test_identity_columns_cannot_change(crm: Connection, table: str) -> None:
    """Refused before the diff (which therefore leaves these columns out): no write hides it."""
    with pytest.raises(IntegrityError, match=rf"{table}\.id and {table}\.created_at cannot be"):
        crm.execute(
            text(
                f"UPDATE {table} SET created_at = created_at - interval '1 day' "
                f"WHERE id = (SELECT min(id::text)::uuid FROM {table})"
            )
        )


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [("orders", "order_number", "order_number + 1"), ("tasks", "created_by", ":someone")],
)
def test_a_changed_id_or_created_at_is_named_first(
    crm: Connection, table: str, column: str, value: str
) -> None:
    """Alone, the table's own identity column has its message; with id or created_at it
    gives way to theirs."""
    change = f"{column} = {value}"
    row = q(
        crm,
        f"SELECT id FROM {table} WHERE {column} IS DISTINCT FROM {value} ORDER BY id LIMIT 1",
        someone=s.AGENT_B,
    )
    crm.execute(text("SAVEPOINT alone"))
    with pytest.raises(IntegrityError, match=rf"{table}\.{column} cannot be changed"):
        crm.execute(
            text(f"UPDATE {table} SET {change} WHERE id = :r"), {"someone": s.AGENT_B, "r": row}
        )
    crm.execute(text("ROLLBACK TO SAVEPOINT alone"))
    with pytest.raises(IntegrityError, match=rf"{table}\.id and {table}\.created_at cannot be"):
        crm.execute(
            text(
                f"UPDATE {table} SET created_at = created_at - interval '1 day', {change} "
                "WHERE id = :r"
            ),
            {"someone": s.AGENT_B, "r": row},
        )


def test_a_task_creator_going_null_is_logged(crm: Connection) -> None:
    """The one identity column that may change (its foreign key empties it when the creator's
    profile goes): the change is logged like any other."""
    task, creator = crm.execute(
        text("SELECT id, created_by FROM tasks WHERE created_by IS NOT NULL ORDER BY id LIMIT 1")
    ).one()
    crm.execute(text("UPDATE tasks SET created_by = NULL WHERE id = :t"), {"t": task})
    logged = crm.execute(
        text("SELECT changed_columns, old_values, new_values FROM change_log WHERE record_id = :t"),
        {"t": task},
    ).all()
    assert [tuple(r) for r in logged] == [
        (["created_by"], {"created_by": str(creator)}, {"created_by": None})
    ]


def test_no_op_updates_leave_no_trace(crm: Connection) -> None:
    crm.execute(text("UPDATE products SET name = name, updated_at = now(), version = 5"))
    assert q(crm, "SELECT count(*) FROM change_log") == 0
    assert q(crm, "SELECT max(version) FROM products") == 1


def test_bulk_update_logs_every_row(crm: Connection) -> None:
    crm.execute(
        text(
            "INSERT INTO products (name, sku, category, unit_price) "
            "SELECT 'Bulk ' || g, 'BULK-' || g, 'flower', 10 FROM generate_series(1, 10000) AS g"
        )
    )
    crm.execute(text("UPDATE products SET unit_price = unit_price + 1 WHERE sku LIKE 'BULK-%'"))
    counts = dict(
        crm.execute(
            text(
                "SELECT operation::text, count(*) FROM change_log "
                "WHERE table_name = 'products' GROUP BY 1"
            )
        ).all()
    )
    assert counts == {"insert": 10000, "update": 10000}


def test_hard_delete_is_for_admins_only(crm: Connection) -> None:
    act_as(crm, s.AGENT_A)
    crm.execute(text("SAVEPOINT try"))
    with pytest.raises(DBAPIError, match="only an admin can delete from communications"):
        crm.execute(text("DELETE FROM communications WHERE agent_id = :a"), {"a": s.AGENT_A})
    crm.execute(text("ROLLBACK TO SAVEPOINT try"))
    deleted = crm.execute(
        text("UPDATE communications SET deleted_at = now() WHERE agent_id = :a"), {"a": s.AGENT_A}
    )
    assert deleted.rowcount == 1  # agents soft-delete instead
    act_as(crm, None, role="service_role")
    assert (
        crm.execute(
            text("DELETE FROM tasks WHERE dispensary_id = :d"), {"d": s.DISPENSARY_B}
        ).rowcount
        == 1
    )


def test_only_admins_restore(crm: Connection) -> None:
    crm.execute(
        text("UPDATE communications SET deleted_at = now() WHERE agent_id = :a"), {"a": s.AGENT_A}
    )
    act_as(crm, s.AGENT_A)
    crm.execute(text("SAVEPOINT try"))
    refusal = ""
    try:  # refused outright, or (with phase 4's policies) the deleted row is out of reach
        crm.execute(
            text("UPDATE communications SET deleted_at = NULL WHERE agent_id = :a"),
            {"a": s.AGENT_A},
        )
    except DBAPIError as exc:
        refusal = str(exc)
    crm.execute(text("ROLLBACK TO SAVEPOINT try"))
    assert refusal == "" or "only an admin can restore" in refusal
    reset_role(crm)
    assert q(
        crm, "SELECT deleted_at IS NOT NULL FROM communications WHERE agent_id = :a", a=s.AGENT_A
    )
    act_as(crm, s.ADMIN)
    crm.execute(
        text("UPDATE communications SET deleted_at = NULL WHERE agent_id = :a"), {"a": s.AGENT_A}
    )
    reset_role(crm)
    restored = crm.execute(
        text("SELECT deleted_at, deleted_by FROM communications WHERE agent_id = :a"),
        {"a": s.AGENT_A},
    ).one()
    assert tuple(restored) == (None, None)


def test_soft_deleted_rows_keep_their_references(crm: Connection) -> None:
    crm.execute(
        text("UPDATE dispensary_profiles SET deleted_at = now() WHERE id = :d"),
        {"d": s.DISPENSARY_A},
    )
    assert q(crm, "SELECT dispensary_id FROM orders WHERE id = :o", o=s.ORDER_A) == s.DISPENSARY_A
    deleted_by = q(
        crm, "SELECT deleted_by FROM dispensary_profiles WHERE id = :d", d=s.DISPENSARY_A
    )
    assert deleted_by is None  # a direct database session has no auth.uid()


def test_concurrent_updates_are_both_counted(engine: Engine) -> None:
    with engine.begin() as setup:
        s.load(setup)
    first = engine.connect()
    first.execute(text("UPDATE orders SET notes = 'first' WHERE id = :o"), {"o": s.ORDER_A})
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as other:  # blocks on the row lock until `first` commits
                other.execute(
                    text("UPDATE orders SET total_amount = 510 WHERE id = :o"), {"o": s.ORDER_A}
                )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    # Let `first` commit only once the second UPDATE waits for its row lock. The bound is
    # against hanging; nothing is decided by the clock.
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE orders SET total_amount%'"
    )
    with engine.connect() as watcher:
        for _ in range(6000):
            assert thread.is_alive(), errors  # it must block, not finish
            if watcher.execute(text(waiting)).scalar() == 1:
                break
            watcher.rollback()  # a fresh pg_stat_activity snapshot next time
            time.sleep(0.01)
        else:
            pytest.fail("the second UPDATE never waited for the row lock")
    first.commit()
    first.close()
    thread.join()
    assert errors == []
    with engine.connect() as check:
        row = check.execute(
            text("SELECT version, edit_count, notes, total_amount FROM orders WHERE id = :o"),
            {"o": s.ORDER_A},
        ).one()
        assert tuple(row) == (3, 2, "first", 510)
        logged = check.execute(
            text(
                "SELECT changed_columns FROM change_log WHERE record_id = :o "
                "AND operation = 'update' ORDER BY id"
            ),
            {"o": s.ORDER_A},
        ).scalars()
        # The second's trigger ran on the row the first committed (its OLD has notes =
        # 'first'): with a stale OLD, notes would be logged again as changed.
        assert list(logged) == [["notes"], ["total_amount"]]


# --- partition archive ---------------------------------------------------------------------


def _old_months(connection: Connection) -> None:
    connection.execute(
        text(
            "SELECT public.ensure_activity_log_partitions(2, "
            "(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '8 months')::date)"
        )
    )
    connection.execute(
        text(
            "INSERT INTO user_activity_log (activity, created_at) SELECT 'view', "
            "date_trunc('month', now()) - interval '8 months' + g * interval '1 hour' "
            "FROM generate_series(1, 50) AS g"
        )
    )


def test_archive_detaches_old_months_and_keeps_their_rows(crm: Connection) -> None:
    _old_months(crm)
    total = q(crm, "SELECT count(*) FROM user_activity_log")
    archived = crm.execute(
        text(
            "SELECT partition_name, action, row_count FROM "
            "public.archive_activity_log_partitions(interval '90 days')"
        )
    ).all()
    assert [a for _, a, _ in archived] == ["archived"] * 3
    assert sum(n for _, _, n in archived) == total == 50
    kept = sum(q(crm, f"SELECT count(*) FROM activity_archive.{name}") for name, _, _ in archived)
    assert kept == 50
    assert (
        q(
            crm,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename LIKE 'user_activity_log_%'",
        )
        == 12
    )
    assert crm.execute(text("SELECT * FROM public.archive_activity_log_partitions()")).all() == []


def test_archive_drops_only_when_asked(crm: Connection) -> None:
    _old_months(crm)
    dropped = crm.execute(
        text("SELECT action FROM public.archive_activity_log_partitions('90 days', true)")
    ).scalars()
    assert list(dropped) == ["dropped"] * 3
    assert q(crm, "SELECT count(*) FROM pg_tables WHERE schemaname = 'activity_archive'") == 0


def test_archive_refuses_bad_input(crm: Connection) -> None:
    with pytest.raises(DBAPIError, match="older_than must be a positive interval"):
        crm.execute(text("SELECT * FROM public.archive_activity_log_partitions('-1 day')"))


def test_downgrade_brings_archived_months_back(
    empty_db_url: URL, make_engine: Callable[[URL], Engine]
) -> None:
    engine = make_engine(empty_db_url)
    config = migrations.make_config(empty_db_url)
    command.upgrade(config, "0005_phase3_functions_triggers")
    with engine.begin() as connection:
        _old_months(connection)
        connection.execute(text("SELECT * FROM public.archive_activity_log_partitions()"))
    command.downgrade(config, "0004_phase2_indexes_constraints")
    with engine.connect() as connection:
        assert q(connection, "SELECT count(*) FROM user_activity_log") == 50
        assert q(connection, "SELECT to_regnamespace('activity_archive')") is None
