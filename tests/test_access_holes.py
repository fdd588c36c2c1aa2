"""Each write-scope hole found in the review of issue 12, as a plain regression test: the
attempt a hostile signed-in agent made through PostgREST-shaped requests now fails and
changes nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from tests import sample_data as s
from tests.helpers import act_as, reset_role

ORDER_B_AT_A = uuid.UUID("30000000-0000-4000-8000-0000000000ba")  # agent B's, at A's dispensary
CALL_B_AT_A = uuid.UUID("40000000-0000-4000-8000-0000000000ba")
MANAGERS_TASK = "SELECT id FROM tasks WHERE created_by = :m"


@pytest.fixture
def crm(conn: Connection) -> Connection:
    s.load(conn)
    params = {
        "o": ORDER_B_AT_A,
        "c": CALL_B_AT_A,
        "d": s.DISPENSARY_A,
        "b": s.AGENT_B,
        "p": s.PRODUCT_FLOWER,
    }
    for sql in (
        "INSERT INTO orders (id, dispensary_id, agent_id) VALUES (:o, :d, :b)",
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
        "VALUES (:o, :p, 1, 22)",
        "INSERT INTO communications (id, dispensary_id, agent_id, type) "
        "VALUES (:c, :d, :b, 'call')",
    ):
        conn.execute(text(sql), params)
    return conn


def attempt(conn: Connection, who: uuid.UUID | None, sql: str, **params: Any) -> str:
    """Run ``sql`` as ``who``; '' when it changed a row, else how it was refused."""
    act_as(conn, who)
    conn.execute(text("SAVEPOINT hole"))
    try:
        result = conn.execute(text(sql), params)
        outcome = "" if result.rowcount else "no rows"
        conn.execute(text("RELEASE SAVEPOINT hole"))
    except DBAPIError as exc:
        outcome = str(exc.orig).splitlines()[0]
        conn.execute(text("ROLLBACK TO SAVEPOINT hole"))
    reset_role(conn)
    return outcome


def row(conn: Connection, table: str, row_id: Any) -> Any:
    return conn.execute(
        text(f"SELECT to_jsonb(t) FROM {table} AS t WHERE id = :i"), {"i": row_id}
    ).scalar()


def test_agent_cannot_take_over_another_agents_order_at_its_dispensary(crm: Connection) -> None:
    before = row(crm, "orders", ORDER_B_AT_A)
    take = "UPDATE orders SET agent_id = :me WHERE id = :o"
    assert attempt(crm, s.AGENT_A, take, me=s.AGENT_A, o=ORDER_B_AT_A)
    assert row(crm, "orders", ORDER_B_AT_A) == before


def test_agent_cannot_reown_and_delete_another_agents_communication(crm: Connection) -> None:
    before = row(crm, "communications", CALL_B_AT_A)
    take = "UPDATE communications SET agent_id = :me WHERE id = :c"
    assert attempt(crm, s.AGENT_A, take, me=s.AGENT_A, c=CALL_B_AT_A)
    remove = "UPDATE communications SET deleted_at = now() WHERE id = :c"
    assert attempt(crm, s.AGENT_A, remove, c=CALL_B_AT_A)
    assert row(crm, "communications", CALL_B_AT_A) == before


def test_agent_cannot_reprice_or_add_lines_of_an_order_it_only_sees(crm: Connection) -> None:
    lines = "SELECT count(*), sum(unit_price) FROM order_items WHERE order_id = :o"
    before = tuple(crm.execute(text(lines), {"o": ORDER_B_AT_A}).one())
    reprice = "UPDATE order_items SET unit_price = 0.01 WHERE order_id = :o"
    assert attempt(crm, s.AGENT_A, reprice, o=ORDER_B_AT_A)
    add = (
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
        "VALUES (:o, :p, 100, 0.01)"
    )
    assert "row-level security" in attempt(crm, s.AGENT_A, add, o=ORDER_B_AT_A, p=s.PRODUCT_VAPE)
    assert tuple(crm.execute(text(lines), {"o": ORDER_B_AT_A}).one()) == before


def test_order_numbers_are_the_databases(crm: Connection) -> None:
    squat = (
        "INSERT INTO orders (dispensary_id, agent_id, order_number) "
        "VALUES (:d, :me, (SELECT max(order_number) + 1 FROM orders))"
    )
    assert "permission denied" in attempt(crm, s.AGENT_A, squat, d=s.DISPENSARY_A, me=s.AGENT_A)
    renumber = "UPDATE orders SET order_number = 999999 WHERE id = :o"
    assert "permission denied" in attempt(crm, s.AGENT_A, renumber, o=s.ORDER_A)
    # ... and the next ordinary insert gets its number as usual
    ordinary = "INSERT INTO orders (dispensary_id, agent_id) VALUES (:d, :me)"
    assert attempt(crm, s.AGENT_A, ordinary, d=s.DISPENSARY_A, me=s.AGENT_A) == ""


def test_agent_cannot_move_its_communication_to_another_dispensary(crm: Connection) -> None:
    move = "UPDATE communications SET dispensary_id = :d WHERE agent_id = :me"
    assert "row-level security" in attempt(crm, s.AGENT_A, move, d=s.DISPENSARY_B, me=s.AGENT_A)


def test_agent_cannot_create_tasks_for_another_agents_dispensary(crm: Connection) -> None:
    plant = "INSERT INTO tasks (title, assigned_to, dispensary_id) VALUES ('Call me', :b, :d)"
    assert "row-level security" in attempt(crm, s.AGENT_A, plant, b=s.AGENT_B, d=s.DISPENSARY_B)


def test_task_creator_cannot_be_rewritten(crm: Connection) -> None:
    forge = "UPDATE tasks SET created_by = :me WHERE created_by = :b"
    assert "permission denied" in attempt(crm, s.AGENT_B, forge, me=s.AGENT_A, b=s.AGENT_B)
    stamped = "INSERT INTO tasks (title, created_by) VALUES ('Mine', :m)"
    assert "permission denied" in attempt(crm, s.AGENT_A, stamped, m=s.MANAGER)


def test_assignee_cannot_delete_a_managers_task_but_may_complete_it(crm: Connection) -> None:
    task = crm.execute(text(MANAGERS_TASK), {"m": s.MANAGER}).scalar()
    remove = "UPDATE tasks SET deleted_at = now() WHERE id = :t"
    assert "assignee" in attempt(crm, s.AGENT_A, remove, t=task)
    retitle = "UPDATE tasks SET title = 'Nothing to do' WHERE id = :t"
    assert "assignee" in attempt(crm, s.AGENT_A, retitle, t=task)
    done = "UPDATE tasks SET status = 'completed', completed_at = now() WHERE id = :t"
    assert attempt(crm, s.AGENT_A, done, t=task) == ""


@pytest.mark.parametrize(
    ("table", "where"), [("orders", "id = :o"), ("profiles", "id = :me")], ids=["order", "profile"]
)
def test_created_at_cannot_be_rewritten(crm: Connection, table: str, where: str) -> None:
    backdate = f"UPDATE {table} SET created_at = '2001-01-01' WHERE {where}"
    assert "permission denied" in attempt(crm, s.AGENT_A, backdate, o=s.ORDER_A, me=s.AGENT_A)


def test_profile_email_follows_supabase_auth_and_is_not_api_writable(crm: Connection) -> None:
    lookalike = "UPDATE profiles SET email = 'Stokes@CakeOklahoma.com' WHERE id = :me"
    assert "permission denied" in attempt(crm, s.AGENT_A, lookalike, me=s.AGENT_A)
    crm.execute(
        text("UPDATE auth.users SET email = 'avery@cakeoklahoma.com' WHERE id = :a"),
        {"a": s.AGENT_A},
    )
    email = "SELECT email FROM profiles WHERE id = :a"
    assert crm.execute(text(email), {"a": s.AGENT_A}).scalar() == "avery@cakeoklahoma.com"


def test_sign_up_creates_an_agent_profile(crm: Connection) -> None:
    new = uuid.uuid4()
    crm.execute(
        text(
            "INSERT INTO auth.users (id, email, raw_user_meta_data) "
            "VALUES (:u, 'new.agent@cakeoklahoma.com', '{\"full_name\": \"Nova\"}')"
        ),
        {"u": new},
    )
    profile = crm.execute(
        text("SELECT email, full_name, role::text, is_active FROM profiles WHERE id = :u"),
        {"u": new},
    ).one()
    assert tuple(profile) == ("new.agent@cakeoklahoma.com", "Nova", "agent", True)


def test_the_sign_up_function_is_out_of_the_apis_reach(crm: Connection) -> None:
    usage = crm.execute(
        text(
            "SELECT has_function_privilege('authenticated', p.oid, 'EXECUTE'), "
            "has_function_privilege('service_role', p.oid, 'EXECUTE'), "
            "has_schema_privilege('anon', 'private', 'USAGE'), p.prosecdef, p.proconfig "
            "FROM pg_proc p WHERE p.oid = 'private.profile_from_auth_user()'::regprocedure"
        )
    ).one()
    assert tuple(usage) == (False, False, False, True, ['search_path=""'])


def log(conn: Connection, who: uuid.UUID | None, activity: str, metadata: str = "{}") -> str:
    return attempt(
        conn,
        who,
        "SELECT public.log_user_activity(NULL, CAST(:a AS activity_type), 'dispensary', :d, "
        "CAST(:m AS jsonb))",
        a=activity,
        d=s.DISPENSARY_B,
        m=metadata,
    )


@pytest.mark.parametrize("activity", ["role_changed", "permission_granted", "system", "delete"])
def test_privileged_activity_is_not_the_callers_to_log(crm: Connection, activity: str) -> None:
    assert "recorded by the database" in log(crm, s.AGENT_A, activity)
    logged = "SELECT count(*) FROM user_activity_log"
    assert crm.execute(text(logged)).scalar() == 0


def test_the_database_logs_a_role_change_with_its_actor(crm: Connection) -> None:
    promote = "UPDATE profiles SET role = 'manager' WHERE id = :a"
    assert attempt(crm, s.ADMIN, promote, a=s.AGENT_A) == ""
    entry = crm.execute(
        text(
            "SELECT user_id, resource_id, metadata ->> 'to' FROM user_activity_log "
            "WHERE activity = 'role_changed'"
        )
    ).one()
    assert tuple(entry) == (s.ADMIN, s.AGENT_A, "manager")


@pytest.mark.parametrize("state", ["is_active = false", "deleted_at = now()"])
def test_inactive_or_deleted_user_logs_only_failed_sign_ins(crm: Connection, state: str) -> None:
    crm.execute(text(f"UPDATE profiles SET {state} WHERE id = :u"), {"u": s.ADMIN})
    assert "only log login_failed" in log(crm, s.ADMIN, "login")
    assert (
        crm.execute(text("SELECT login_count FROM profiles WHERE id = :u"), {"u": s.ADMIN}).scalar()
        == 0
    )
    assert log(crm, s.ADMIN, "login_failed") == ""


@pytest.mark.parametrize(
    ("headers", "hops", "ip"),
    [
        ({"x-forwarded-for": "1.2.3.4, 203.0.113.9"}, None, "203.0.113.9"),
        ({"x-forwarded-for": "1.2.3.4", "x-real-ip": "5.6.7.8"}, None, "1.2.3.4"),
        ({"x-real-ip": "5.6.7.8"}, None, None),
        ({"x-forwarded-for": "1.2.3.4, 198.51.100.2, 10.0.0.1"}, "2", "198.51.100.2"),
        ({"x-forwarded-for": "10.0.0.1"}, "2", None),
        ({"x-forwarded-for": "1.2.3.4"}, "0", None),
    ],
)
def test_client_ip_follows_the_trusted_proxy_rule(
    crm: Connection, headers: dict[str, str], hops: str | None, ip: str | None
) -> None:
    crm.execute(text("SELECT set_config('request.headers', :h, true)"), {"h": json.dumps(headers)})
    if hops is not None:
        crm.execute(text("SELECT set_config('crm.trusted_proxy_hops', :n, true)"), {"n": hops})
    assert log(crm, s.AGENT_A, "view") == ""
    logged = crm.execute(text("SELECT host(ip_address) FROM user_activity_log")).scalar()
    assert logged == ip


def test_a_bad_trusted_hop_count_is_one_clear_error(crm: Connection) -> None:
    crm.execute(
        text("SELECT set_config('request.headers', '{\"x-forwarded-for\": \"1.2.3.4\"}', true)")
    )
    crm.execute(text("SELECT set_config('crm.trusted_proxy_hops', 'many', true)"))
    assert "crm.trusted_proxy_hops must be a whole number" in log(crm, s.AGENT_A, "view")


def test_oversize_activity_input_is_refused_clearly(crm: Connection) -> None:
    huge = json.dumps({"x": "x" * 16_000_000})
    assert "metadata is too large" in log(crm, s.AGENT_A, "view", huge)
    agent = json.dumps({"user-agent": "x" * 4_000_000})
    crm.execute(text("SELECT set_config('request.headers', :h, true)"), {"h": agent})
    assert "user agent is too long" in log(crm, s.AGENT_A, "view")
    assert crm.execute(text("SELECT count(*) FROM user_activity_log")).scalar() == 0


def test_oversize_notes_are_refused(crm: Connection) -> None:
    notes = "UPDATE orders SET notes = repeat('x', 16000000) WHERE id = :o"
    assert "orders_notes_length_check" in attempt(crm, s.AGENT_A, notes, o=s.ORDER_A)


def test_managers_do_not_read_deleted_content_but_auditors_may(crm: Connection) -> None:
    remove = "UPDATE communications SET deleted_at = now() WHERE id = :c"
    assert attempt(crm, s.ADMIN, remove, c=CALL_B_AT_A) == ""
    history = "SELECT count(*) FROM record_change_history WHERE record_id = :c"

    def seen_by(who: uuid.UUID) -> int:
        act_as(crm, who)
        count = int(crm.execute(text(history), {"c": CALL_B_AT_A}).scalar_one())
        reset_role(crm)
        return count

    assert seen_by(s.MANAGER) == 0
    assert seen_by(s.ADMIN) == 2  # inserted, soft-deleted
    crm.execute(
        text(
            "INSERT INTO user_permissions (user_id, permission, resource, granted_by) "
            "VALUES (:u, 'read', 'change_log', :a)"
        ),
        {"u": s.AGENT_B, "a": s.ADMIN},
    )
    assert seen_by(s.AGENT_B) == 2  # the auditor
