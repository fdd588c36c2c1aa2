"""Phases 1-2 (revisions 0003 and 0004): the seed's checks verbatim, safe defaults for
existing rows, named validation constraints, and a partitioned activity log that never
loses a row."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError

from crm_schema import access_model, migrations
from crm_schema.runbook.baseline import CRM_TABLES
from tests import sample_data as s

PHASE1 = "0003_phase1_schema_structure"
PHASE2 = "0004_phase2_indexes_constraints"

SEED_NEW_TABLES = """
SELECT COUNT(*) as new_tables_count FROM information_schema.tables
WHERE table_schema = 'public'
AND table_name IN ('user_permissions', 'role_permissions', 'user_activity_log', 'change_log');
"""
SEED_NEW_COLUMNS = """
SELECT COUNT(*) as new_columns_count FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = 'profiles'
AND column_name IN ('deleted_at', 'deleted_by', 'is_active', 'metadata', 'last_login_at', 'login_count');
"""  # noqa: E501 - the seed's query, verbatim
SEED_PARTITIONS = """
SELECT schemaname, tablename FROM pg_tables
WHERE schemaname = 'public'
AND tablename LIKE 'user_activity_log_%';
"""
SEED_ROLLBACK_TABLES = """
SELECT COUNT(*) FROM information_schema.tables
WHERE table_schema = 'public'
AND table_name IN ('user_permissions', 'role_permissions', 'user_activity_log', 'change_log');
"""
SEED_ROLLBACK_COLUMNS = """
SELECT COUNT(*) FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = 'profiles'
AND column_name IN ('deleted_at', 'deleted_by', 'is_active', 'metadata');
"""


@pytest.fixture
def walk(empty_db_url: URL, make_engine: Any) -> tuple[Engine, Any]:
    """An empty database and a function migrating it to a revision."""
    config = migrations.make_config(empty_db_url)

    def to(revision: str) -> None:
        if revision == "base" or (migrations.current_revision(empty_db_url) or "") > revision:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)

    return make_engine(empty_db_url), to


def _scalar(connection: Connection, sql: str, **params: Any) -> Any:
    return connection.execute(text(sql), params).scalar()


def test_seed_structure_checks_verbatim_and_rollback(walk: tuple[Engine, Any]) -> None:
    engine, to = walk
    to("head")
    with engine.connect() as connection:
        assert _scalar(connection, SEED_NEW_TABLES) == 4
        assert _scalar(connection, SEED_NEW_COLUMNS) == 6
        assert len(connection.execute(text(SEED_PARTITIONS)).all()) == 12
    to(migrations.BASELINE_REVISION)
    with engine.connect() as connection:
        assert _scalar(connection, SEED_ROLLBACK_TABLES) == 0
        assert _scalar(connection, SEED_ROLLBACK_COLUMNS) == 0


TRACKED = CRM_TABLES


def test_existing_rows_get_the_seed_defaults_without_a_rewrite(walk: tuple[Engine, Any]) -> None:
    engine, to = walk
    to(migrations.BASELINE_REVISION)
    with engine.begin() as connection:
        s.load(connection)
    file_nodes = "SELECT " + ", ".join(f"pg_relation_filenode('public.{t}')" for t in TRACKED)
    with engine.connect() as connection:
        before = connection.execute(text(file_nodes)).one()
    to(PHASE1)
    with engine.connect() as connection:
        # A constant default is stored in the catalog: no table was rewritten.
        assert connection.execute(text(file_nodes)).one() == before
        profile = connection.execute(
            text(
                "SELECT is_active, metadata, login_count, last_login_at, deleted_at, "
                "version, edit_count FROM profiles WHERE id = :id"
            ),
            {"id": s.AGENT_A},
        ).one()
        assert tuple(profile) == (True, {}, 0, None, None, 1, 0)
        for table in TRACKED:
            metadata = "'{}'::jsonb" if table == "order_items" else "metadata"
            defaults = connection.execute(
                text(
                    "SELECT DISTINCT version, edit_count, updated_by, deleted_at, deleted_by, "
                    f"{metadata} FROM {table}"
                )
            ).all()
            assert defaults == [(1, 0, None, None, None, {})], table


# The checks phase 2 puts on every tracked table (order_items has no metadata column).
TRACKING_BAD_VALUES = [
    (table, None, assignment, f"{table}_{name}_check")
    for table in TRACKED
    for assignment, name in (
        ("version = 0", "version"),
        ("edit_count = -1", "edit_count"),
        ("deleted_by = id, deleted_at = NULL", "deleted_by"),
        ("metadata = '[1, 2]'", "metadata"),
    )
    if not (table == "order_items" and name == "metadata")
]


# One character, or byte, over each documented size bound (docs/access-model.md). E-mails
# stay well-formed, so only the length check can be what rejects them.
def _too_long(column: str, limit: int) -> str:
    if column == "email":
        return f"{column} = 'a@' || repeat('x', {limit}) || '.ok'"
    return f"{column} = repeat('x', {limit + 1})"


BOUND_BAD_VALUES = [
    *(
        (table, None, _too_long(column, limit), f"{table}_{column}_length_check")
        for table, columns in access_model.TEXT_BOUNDS.items()
        if table != "user_activity_log"  # a partitioned table's checks are tested below
        for column, limit in columns.items()
    ),
    *(
        (
            table,
            None,
            f"metadata = jsonb_build_object('x', repeat('x', {access_model.METADATA_BYTES}))",
            f"{table}_metadata_size_check",
        )
        for table in access_model.JSONB_BOUNDED
        if table != "user_activity_log"
    ),
]

# (table, id of a sample row or None for all rows, bad assignment, the constraint that must
# reject it)
BAD_VALUES = [
    *TRACKING_BAD_VALUES,
    ("profiles", s.AGENT_A, "email = 'not-an-email'", "profiles_email_format_check"),
    ("profiles", s.AGENT_A, "login_count = -1", "profiles_login_count_check"),
    (
        "dispensary_profiles",
        s.DISPENSARY_A,
        "license_number = 'OMMA-12'",
        "dispensary_profiles_license_number_format_check",
    ),
    (
        "dispensary_profiles",
        s.DISPENSARY_A,
        "state = 'Oklahoma'",
        "dispensary_profiles_state_check",
    ),
    (
        "dispensary_profiles",
        s.DISPENSARY_A,
        "postal_code = '7410'",
        "dispensary_profiles_postal_code_check",
    ),
    (
        "dispensary_profiles",
        s.DISPENSARY_A,
        "email = 'x@'",
        "dispensary_profiles_email_format_check",
    ),
    ("products", s.PRODUCT_FLOWER, "unit_price = -0.01", "products_unit_price_check"),
    ("products", s.PRODUCT_FLOWER, "thc_percent = 100.5", "products_thc_percent_check"),
    ("products", s.PRODUCT_FLOWER, "cbd_percent = -1", "products_cbd_percent_check"),
    ("orders", s.ORDER_A, "total_amount = -5", "orders_total_amount_check"),
    ("order_items", None, "unit_price = -1", "order_items_unit_price_check"),
    ("tasks", None, "metadata = '\"text\"'", "tasks_metadata_check"),
    *BOUND_BAD_VALUES,
]


@pytest.mark.parametrize(("table", "row_id", "assignment", "constraint"), BAD_VALUES)
def test_constraint_rejects_bad_value_by_name(
    conn: Connection, table: str, row_id: Any, assignment: str, constraint: str
) -> None:
    s.load(conn)
    if table == "user_permissions":  # the sample CRM has no overrides
        conn.execute(
            text(
                "INSERT INTO user_permissions (user_id, permission, resource) "
                "VALUES (:u, 'read', 'order')"
            ),
            {"u": s.AGENT_A},
        )
    where = "id = :id" if row_id else "true"
    # Triggers off (as for a bulk load): the constraint itself must hold the line, even for
    # the columns phase 3's triggers normally manage.
    conn.execute(text("SET LOCAL session_replication_role = replica"))
    conn.execute(text("SAVEPOINT bad"))
    with pytest.raises(IntegrityError, match=constraint):
        conn.execute(text(f"UPDATE {table} SET {assignment} WHERE {where}"), {"id": row_id})
    conn.execute(text("ROLLBACK TO SAVEPOINT bad"))


@pytest.mark.parametrize("table", TRACKED)
def test_tracking_columns_accept_good_values(conn: Connection, table: str) -> None:
    s.load(conn)
    conn.execute(text("SET LOCAL session_replication_role = replica"))
    metadata = "" if table == "order_items" else ', metadata = \'{"source": "import"}\''
    conn.execute(
        text(
            f"UPDATE {table} SET version = 7, edit_count = 0, deleted_at = now(), "
            f"deleted_by = :who{metadata}"
        ),
        {"who": s.ADMIN},
    )


def test_every_phase2_check_is_exercised() -> None:
    """A constraint added to phase 2 without a bad-value case above fails here."""
    module = migrations.script_directory().get_revision(PHASE2).module
    exercised = {case[3] for case in BAD_VALUES} | {
        "order_items_quantity_check",
        "user_permissions_expires_at_check",
    }
    assert {name for _, name, _ in module.CHECKS} <= exercised


def test_good_values_are_accepted(conn: Connection) -> None:
    s.load(conn)
    conn.execute(
        text(
            "UPDATE dispensary_profiles SET license_number = 'DAAA-ZZ9Z-1A2B', state = 'OK', "
            "postal_code = '74103-1234', email = 'buyer@redirt.example' WHERE id = :id"
        ),
        {"id": s.DISPENSARY_A},
    )
    conn.execute(text("UPDATE products SET thc_percent = 100, cbd_percent = 0, unit_price = 0"))
    conn.execute(text("UPDATE order_items SET quantity = 1"))


def test_order_item_quantity_and_permission_expiry_constraints(conn: Connection) -> None:
    s.load(conn)
    with pytest.raises(IntegrityError, match="order_items_quantity_check"):
        conn.execute(text("UPDATE order_items SET quantity = 0"))
    conn.rollback()
    s.load(conn)
    with pytest.raises(IntegrityError, match="user_permissions_expires_at_check"):
        conn.execute(
            text(
                "INSERT INTO user_permissions (user_id, permission, resource, expires_at) "
                "VALUES (:u, 'read', 'order', now() - interval '1 day')"
            ),
            {"u": s.AGENT_A},
        )


def test_activity_metadata_must_be_an_object(conn: Connection) -> None:
    conn.execute(text("INSERT INTO user_activity_log (activity, metadata) VALUES ('view', '{}')"))
    with pytest.raises(IntegrityError, match="user_activity_log_metadata_check"):
        conn.execute(
            text("INSERT INTO user_activity_log (activity, metadata) VALUES ('view', '[1]')")
        )


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        (
            f"'view', jsonb_build_object('x', repeat('x', {access_model.METADATA_BYTES})), NULL",
            "user_activity_log_metadata_size_check",
        ),
        ("'view', '{}', repeat('x', 513)", "user_activity_log_user_agent_length_check"),
    ],
)
def test_activity_log_rows_are_bounded(conn: Connection, values: str, constraint: str) -> None:
    sql = f"INSERT INTO user_activity_log (activity, metadata, user_agent) VALUES ({values})"
    with pytest.raises(IntegrityError, match=constraint):
        conn.execute(text(sql))


def test_every_user_writable_text_and_jsonb_column_is_bounded(conn: Connection) -> None:
    """Every text or jsonb column an API user may write has a documented bound."""
    writable = conn.execute(
        text(
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition AND a.attnum > 0 AND a.atttypid IN ('text'::regtype, "
            "'jsonb'::regtype) AND (has_column_privilege('authenticated', c.oid, a.attname, "
            "'INSERT') OR has_column_privilege('authenticated', c.oid, a.attname, 'UPDATE'))"
        )
    ).all()
    bounded = {(t, c) for t, cols in access_model.TEXT_BOUNDS.items() for c in cols}
    bounded |= {(t, "metadata") for t in access_model.JSONB_BOUNDED}
    bounded |= {(t, c) for t, cols in access_model.FORMAT_BOUNDED.items() for c in cols}
    assert writable
    assert {tuple(row) for row in writable} - bounded == set()


def test_constraints_are_validated(conn: Connection) -> None:
    not_valid = conn.execute(
        text("SELECT conname FROM pg_constraint WHERE contype = 'c' AND NOT convalidated")
    ).scalars()
    assert list(not_valid) == []


def test_bad_existing_rows_stop_phase2_before_any_change(walk: tuple[Engine, Any]) -> None:
    engine, to = walk
    to(migrations.BASELINE_REVISION)
    with engine.begin() as connection:
        s.load(connection)
        connection.execute(
            text("UPDATE order_items SET quantity = 0 WHERE order_id = :o"), {"o": s.ORDER_A}
        )
        connection.execute(text("UPDATE products SET unit_price = -1"))
    to(PHASE1)
    with pytest.raises(CommandError) as failure:
        to(PHASE2)
    message = str(failure.value)
    assert message.startswith(f"{PHASE2} (upgrade) stopped: existing rows violate")
    assert "nothing was changed" in message
    assert "order_items_quantity_check: 2 row(s)" in message
    assert "products_unit_price_check: 2 row(s)" in message
    with engine.connect() as connection:
        assert migrations.current_revision(engine.url) == PHASE1
        added = _scalar(
            connection,
            "SELECT count(*) FROM pg_constraint WHERE conname LIKE '%_check' "
            "AND conname LIKE 'order_items%'",
        )
        assert added == 0
    with engine.begin() as connection:  # the DBA fixes the rows and runs it again
        connection.execute(text("UPDATE order_items SET quantity = 1 WHERE quantity = 0"))
        connection.execute(text("UPDATE products SET unit_price = 0 WHERE unit_price < 0"))
    to(PHASE2)
    assert migrations.current_revision(engine.url) == PHASE2


def test_phase2_can_be_rerun_after_failing_part_way(walk: tuple[Engine, Any]) -> None:
    """Simulate a failure in the non-transactional part: the transactional part committed,
    the version did not move. Running the revision again completes it."""
    engine, to = walk
    to(PHASE2)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX public.orders_agent_date_live_idx"))
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": PHASE1})
    to(PHASE2)
    with engine.connect() as connection:
        assert _scalar(connection, "SELECT to_regclass('public.orders_agent_date_live_idx')")


def _partition_of(connection: Connection, when: str) -> str:
    return str(
        _scalar(
            connection,
            "SELECT tableoid::regclass::text FROM user_activity_log WHERE created_at = :t",
            t=when,
        )
    )


def test_activity_rows_outside_the_months_are_kept_and_later_moved(conn: Connection) -> None:
    now = dt.datetime.now(dt.UTC)
    future = now.replace(day=15, year=now.year + 5).isoformat()
    past = now.replace(day=15, year=now.year - 1).isoformat()
    current = now.isoformat()
    for when in (future, past, current):
        conn.execute(
            text("INSERT INTO user_activity_log (activity, created_at) VALUES ('login', :t)"),
            {"t": when},
        )
    assert _partition_of(conn, future) == "user_activity_overflow"
    assert _partition_of(conn, past) == "user_activity_overflow"
    assert _partition_of(conn, current) == "user_activity_log_" + now.strftime("%Y_%m")
    # Idempotent: everything for the next 12 months already exists.
    assert _scalar(conn, "SELECT public.ensure_activity_log_partitions(11)") == 0
    month = now.replace(day=1, year=now.year + 5).date()
    assert _scalar(conn, "SELECT public.ensure_activity_log_partitions(0, :m)", m=month) == 1
    assert _scalar(conn, "SELECT public.ensure_activity_log_partitions(0, :m)", m=month) == 0
    assert _partition_of(conn, future) == f"user_activity_log_{month:%Y_%m}"
    assert _partition_of(conn, past) == "user_activity_overflow"
    assert _scalar(conn, "SELECT count(*) FROM user_activity_log") == 3


def test_partition_function_refuses_bad_input(conn: Connection) -> None:
    with pytest.raises(DBAPIError, match="months_ahead must be between 0 and 120"):
        conn.execute(text("SELECT public.ensure_activity_log_partitions(-1)"))


def test_partition_function_is_safe_to_run_concurrently(engine: Engine) -> None:
    month = dt.date(2031, 1, 1)
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        try:
            with engine.begin() as connection:
                barrier.wait()
                results.append(
                    connection.execute(
                        text("SELECT public.ensure_activity_log_partitions(5, :m)"), {"m": month}
                    ).scalar_one()
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [0, 0, 6]


def test_every_partition_is_locked_against_the_api_roles(conn: Connection) -> None:
    conn.execute(text("SELECT public.ensure_activity_log_partitions(2, '2030-01-01')"))
    rows = conn.execute(
        text(
            "SELECT c.relname, c.relrowsecurity, "
            "has_table_privilege('anon', c.oid, 'SELECT'), "
            "has_table_privilege('authenticated', c.oid, 'SELECT,INSERT,UPDATE,DELETE') "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'public.user_activity_log'::regclass"
        )
    ).all()
    assert len(rows) == 12 + 3 + 1  # the migration's months, three more, the catch-all
    assert all(rls and not anon and not authed for _, rls, anon, authed in rows), rows


def test_activity_rows_survive_phase2_downgrade_and_upgrade(walk: tuple[Engine, Any]) -> None:
    engine, to = walk
    to(PHASE2)
    rows = """SELECT id, activity, created_at FROM user_activity_log ORDER BY created_at"""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO user_activity_log (activity, created_at, metadata) VALUES "
                "('login', now(), '{\"a\": 1}'), ('export', now() + interval '10 years', '{}'), "
                "('logout', now() - interval '3 years', '{}')"
            )
        )
        before = connection.execute(text(rows)).all()
    to(PHASE1)
    with engine.connect() as connection:
        assert connection.execute(text(rows)).all() == before
    to(PHASE2)
    with engine.connect() as connection:
        assert connection.execute(text(rows)).all() == before


def test_no_duplicate_indexes_and_every_foreign_key_indexed(conn: Connection) -> None:
    duplicates = conn.execute(
        text(
            "SELECT indrelid::regclass, array_agg(indexrelid::regclass) FROM pg_index "
            "JOIN pg_class c ON c.oid = indrelid WHERE c.relnamespace = 'public'::regnamespace "
            "GROUP BY indrelid, indkey::text, indclass::text, coalesce(indexprs::text, ''), "
            "coalesce(indpred::text, '') HAVING count(*) > 1"
        )
    ).all()
    assert duplicates == []
    unindexed = conn.execute(
        text(
            "SELECT c.conrelid::regclass::text, c.conname FROM pg_constraint c "
            "WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace "
            "AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid "
            "AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey)"
        )
    ).all()
    assert unindexed == []


def test_change_log_carries_only_the_indexes_its_reads_need(conn: Connection) -> None:
    """Every logged change pays for each change_log index, and a single-row statement pays for
    opening it as well (docs/benchmark-notes.md): a record's history is indexed, newest first,
    and nothing else is (a user's trail is an investigation's, which builds its own)."""
    indexes = conn.execute(
        text(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = 'public.change_log'::regclass ORDER BY 1"
        )
    ).scalars()
    assert list(indexes) == ["change_log_pkey", "change_log_record_idx"]
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    conn.execute(text("SET LOCAL enable_bitmapscan = off"))
    plan = conn.execute(
        text(
            "EXPLAIN SELECT * FROM change_log "
            "WHERE record_id = '00000000-0000-4000-8000-000000000001' ORDER BY changed_at DESC"
        )
    ).scalars()
    lines = "\n".join(plan)
    assert "change_log_record_idx" in lines, lines
    assert "Sort" not in lines, lines  # the index gives the newest first
