"""Phase 2: indexes, validation constraints, and the monthly-partitioned activity log.

Revision ID: 0004_phase2_indexes_constraints
Revises: 0003_phase1_schema_structure
Create Date: 2026-11-24

Built to run on a busy production database:

1. Existing rows are checked against every new constraint first. If any would fail, the
   revision stops before changing anything and names each constraint with its count of
   offending rows: fix them and run again.
2. In one transaction: the activity log converted to a table range-partitioned by month
   (a catch-all partition ``user_activity_overflow`` keeps rows outside the created months,
   and is named so the seed's ``LIKE 'user_activity_log_%'`` check still counts exactly the
   12 monthly partitions), indexes on the new tables, ``ensure_activity_log_partitions()``;
   then, holding the CRM tables' locks only for that, constraints added ``NOT VALID`` (no
   table scan). Every statement here is guarded, so the revision can simply be run again if
   step 3 fails part way; the 0003 downgrade removes what it leaves.
3. Outside a transaction (Alembic's ``autocommit_block``): indexes on the baseline tables
   built ``CONCURRENTLY`` (writes continue), each after dropping a half-built invalid one
   left by an earlier failed attempt, then each constraint ``VALIDATE``d (a scan that does
   not block reads or writes).

Partition months are calendar months in UTC.
"""

from collections.abc import Sequence

from alembic import context, op
from sqlalchemy import text

revision: str = "0004_phase2_indexes_constraints"
down_revision: str | Sequence[str] | None = "0003_phase1_schema_structure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRACKED = (
    "profiles",
    "dispensary_profiles",
    "products",
    "orders",
    "order_items",
    "communications",
    "tasks",
)
WITH_METADATA = tuple(t for t in TRACKED if t != "order_items")
EMAIL = r"'^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'"

# Size bounds on what users write (docs/access-model.md lists them): without one, a single
# request could store megabytes, and the change log would copy them for ever. Characters for
# text; bytes of the jsonb's text form for metadata. license_number, state and postal_code
# are bounded by their format checks.
TEXT_BOUNDS: tuple[tuple[str, str, int], ...] = (
    ("profiles", "email", 320),
    ("profiles", "full_name", 200),
    ("profiles", "phone", 40),
    ("profiles", "territory", 200),
    ("dispensary_profiles", "name", 200),
    ("dispensary_profiles", "dba_name", 200),
    ("dispensary_profiles", "contact_name", 200),
    ("dispensary_profiles", "phone", 40),
    ("dispensary_profiles", "email", 320),
    ("dispensary_profiles", "address_line1", 200),
    ("dispensary_profiles", "address_line2", 200),
    ("dispensary_profiles", "city", 100),
    ("dispensary_profiles", "county", 100),
    ("dispensary_profiles", "notes", 10000),
    ("products", "name", 200),
    ("products", "sku", 64),
    ("products", "brand", 200),
    ("products", "description", 10000),
    ("products", "unit_size", 64),
    ("orders", "notes", 10000),
    ("communications", "subject", 500),
    ("communications", "body", 20000),
    ("tasks", "title", 500),
    ("tasks", "description", 10000),
    ("user_permissions", "reason", 1000),
)
METADATA_BYTES = 8192
USER_AGENT_CHARS = 512

# (table, constraint name, condition). Names follow the models' naming convention.
CHECKS: tuple[tuple[str, str, str], ...] = (
    *((t, f"{t}_version_check", "version >= 1") for t in TRACKED),
    *((t, f"{t}_edit_count_check", "edit_count >= 0") for t in TRACKED),
    *(
        (t, f"{t}_deleted_by_check", "deleted_by IS NULL OR deleted_at IS NOT NULL")
        for t in TRACKED
    ),
    *((t, f"{t}_metadata_check", "jsonb_typeof(metadata) = 'object'") for t in WITH_METADATA),
    *(
        (t, f"{t}_metadata_size_check", f"octet_length(metadata::text) <= {METADATA_BYTES}")
        for t in WITH_METADATA
    ),
    *((t, f"{t}_{c}_length_check", f"char_length({c}) <= {n}") for t, c, n in TEXT_BOUNDS),
    ("profiles", "profiles_email_format_check", f"email ~* {EMAIL}"),
    ("profiles", "profiles_login_count_check", "login_count >= 0"),
    (
        "dispensary_profiles",
        "dispensary_profiles_email_format_check",
        f"email IS NULL OR email ~* {EMAIL}",
    ),
    (
        "dispensary_profiles",
        "dispensary_profiles_license_number_format_check",
        "license_number IS NULL OR license_number ~ '^[A-Z]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$'",
    ),
    ("dispensary_profiles", "dispensary_profiles_state_check", "state ~ '^[A-Z]{2}$'"),
    (
        "dispensary_profiles",
        "dispensary_profiles_postal_code_check",
        "postal_code IS NULL OR postal_code ~ '^[0-9]{5}(-[0-9]{4})?$'",
    ),
    ("products", "products_unit_price_check", "unit_price >= 0"),
    ("products", "products_thc_percent_check", "thc_percent BETWEEN 0 AND 100"),
    ("products", "products_cbd_percent_check", "cbd_percent BETWEEN 0 AND 100"),
    ("orders", "orders_total_amount_check", "total_amount >= 0"),
    ("order_items", "order_items_quantity_check", "quantity > 0"),
    ("order_items", "order_items_unit_price_check", "unit_price >= 0"),
    (
        "user_permissions",
        "user_permissions_expires_at_check",
        "expires_at IS NULL OR expires_at > created_at",
    ),
)

# Indexes on the (possibly large, busy) baseline tables: built CONCURRENTLY.
CONCURRENT_INDEXES: tuple[tuple[str, str], ...] = (
    (
        "dispensary_profiles_agent_name_live_idx",
        "public.dispensary_profiles (assigned_agent_id, name) WHERE deleted_at IS NULL",
    ),
    ("dispensary_profiles_metadata_idx", "public.dispensary_profiles USING gin (metadata)"),
    ("profiles_metadata_idx", "public.profiles USING gin (metadata)"),
    (
        "orders_dispensary_date_live_idx",
        "public.orders (dispensary_id, order_date DESC) WHERE deleted_at IS NULL",
    ),
    (
        "orders_agent_date_live_idx",
        "public.orders (agent_id, order_date DESC) WHERE deleted_at IS NULL",
    ),
    (
        "communications_dispensary_time_live_idx",
        "public.communications (dispensary_id, occurred_at DESC) WHERE deleted_at IS NULL",
    ),
    (
        "tasks_assignee_open_idx",
        "public.tasks (assigned_to, due_date) "
        "WHERE deleted_at IS NULL AND status IN ('pending', 'in_progress')",
    ),
)

# The activity log's columns, in 0003's order (the downgrade restores that table exactly).
ACTIVITY_COLUMNS = """
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid,
    activity public.activity_type NOT NULL,
    resource public.resource_type,
    resource_id uuid,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip_address inet,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now()"""
ACTIVITY_COLUMN_NAMES = (
    "id, user_id, activity, resource, resource_id, metadata, ip_address, user_agent, created_at"
)
ACTIVITY_COMMENT = (
    "COMMENT ON TABLE public.user_activity_log IS "
    "'What users did (logins, views, exports ...), written through public.log_user_activity.';"
)
ACTIVITY_GRANTS = """
ALTER TABLE public.user_activity_log ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE public.user_activity_log FROM anon, authenticated, service_role;
GRANT SELECT ON TABLE public.user_activity_log TO service_role;
"""

PARTITION_FUNCTION = r"""
CREATE OR REPLACE FUNCTION public.ensure_activity_log_partitions(
    months_ahead integer DEFAULT 11,
    start_month date DEFAULT (now() AT TIME ZONE 'UTC')::date
) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = ''
AS $fn$
DECLARE
    first_month constant date := date_trunc('month', start_month)::date;
    month_start date;
    low timestamptz;
    high timestamptz;
    part text;
    created integer := 0;
BEGIN
    IF months_ahead IS NULL OR months_ahead NOT BETWEEN 0 AND 120 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 120, not %', months_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_month IS NULL THEN
        RAISE EXCEPTION 'start_month must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One maintainer at a time: a concurrent caller waits here, then finds the work done.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('public.user_activity_log'));
    FOR i IN 0..months_ahead LOOP
        month_start := (first_month + make_interval(months => i))::date;
        part := 'user_activity_log_' || to_char(month_start, 'YYYY_MM');
        CONTINUE WHEN to_regclass('public.' || quote_ident(part)) IS NOT NULL;
        low := month_start::timestamp AT TIME ZONE 'UTC';
        high := (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE public.%I (LIKE public.user_activity_log INCLUDING DEFAULTS '
                       'INCLUDING CONSTRAINTS)', part);
        -- Rows that arrived before their month had a partition wait in the catch-all:
        -- they move into the new partition, so attaching it never fails and nothing is lost.
        EXECUTE format('WITH moved AS (DELETE FROM public.user_activity_overflow '
                       'WHERE created_at >= %L AND created_at < %L RETURNING *) '
                       'INSERT INTO public.%I SELECT * FROM moved', low, high, part);
        EXECUTE format('ALTER TABLE public.user_activity_log ATTACH PARTITION public.%I '
                       'FOR VALUES FROM (%L) TO (%L)', part, low, high);
        -- A partition is a table of its own to PostgREST, and queried directly it meets
        -- none of its parent's policies: reachable only through the parent, whatever
        -- default privileges the caller has (Supabase's grant ALL to the API roles).
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', part);
        EXECUTE format('REVOKE ALL ON TABLE public.%I '
                       'FROM PUBLIC, anon, authenticated, service_role', part);
        EXECUTE format('CREATE POLICY no_direct_access ON public.%I AS RESTRICTIVE '
                       'FOR ALL TO public USING (false) WITH CHECK (false)', part);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.ensure_activity_log_partitions(integer, date)
    FROM PUBLIC, anon, authenticated;
COMMENT ON FUNCTION public.ensure_activity_log_partitions(integer, date) IS
    'Create the monthly activity-log partitions from start_month through months_ahead months '
    'later (UTC months), moving waiting rows out of user_activity_overflow. Idempotent; '
    'returns how many it created.';
"""

PARTITION_ACTIVITY_LOG = f"""
DO $convert$
BEGIN
    IF (SELECT relkind FROM pg_catalog.pg_class
        WHERE oid = 'public.user_activity_log'::regclass) = 'r' THEN
        ALTER TABLE public.user_activity_log RENAME TO user_activity_log_unpartitioned;
        ALTER INDEX public.user_activity_log_pkey RENAME TO user_activity_log_unpartitioned_pkey;
        CREATE TABLE public.user_activity_log ({ACTIVITY_COLUMNS},
            CONSTRAINT user_activity_log_pkey PRIMARY KEY (id, created_at),
            CONSTRAINT user_activity_log_metadata_check CHECK (jsonb_typeof(metadata) = 'object'),
            CONSTRAINT user_activity_log_metadata_size_check
                CHECK (octet_length(metadata::text) <= {METADATA_BYTES}),
            CONSTRAINT user_activity_log_user_agent_length_check
                CHECK (char_length(user_agent) <= {USER_AGENT_CHARS})
        ) PARTITION BY RANGE (created_at);
        {ACTIVITY_COMMENT}
        {ACTIVITY_GRANTS}
        CREATE TABLE public.user_activity_overflow
            PARTITION OF public.user_activity_log DEFAULT;
        ALTER TABLE public.user_activity_overflow ENABLE ROW LEVEL SECURITY;
        REVOKE ALL ON TABLE public.user_activity_overflow
            FROM PUBLIC, anon, authenticated, service_role;
        CREATE POLICY no_direct_access ON public.user_activity_overflow AS RESTRICTIVE
            FOR ALL TO public USING (false) WITH CHECK (false);
        CREATE INDEX user_activity_log_user_time_idx
            ON public.user_activity_log (user_id, created_at DESC);
        CREATE INDEX user_activity_log_resource_idx
            ON public.user_activity_log (resource, resource_id, created_at DESC)
            WHERE resource_id IS NOT NULL;
        CREATE INDEX user_activity_log_metadata_idx
            ON public.user_activity_log USING gin (metadata);
        INSERT INTO public.user_activity_log ({ACTIVITY_COLUMN_NAMES})
            SELECT {ACTIVITY_COLUMN_NAMES} FROM public.user_activity_log_unpartitioned;
        DROP TABLE public.user_activity_log_unpartitioned;
    END IF;
END
$convert$;
SELECT public.ensure_activity_log_partitions(11);
"""

CHANGE_LOG_INDEXES = """
-- A record's history. Record ids are uuids, unique across tables: table_name need not be in
-- the key, where every logged change would pay a collation-aware text comparison.
CREATE INDEX IF NOT EXISTS change_log_record_idx
    ON public.change_log (record_id, changed_at DESC);
"""
# Every logged change pays for each index here, and a single-row statement pays for opening it
# too, so a record's history is the only read with an index of its own (docs/benchmark-notes.md):
# - none on changed_columns: a GIN entry per change cost more than the row's other indexes
#   together;
# - none on changed_at alone: a BRIN (or B-tree) index on it cost 11-14k instructions for each
#   logged statement, once a row for single-row writes. A time range across all users is a
#   sequential scan of the log;
# - none on changed_by: measured side by side, it was a twentieth of the time of a single-row
#   insert with its log row and a tenth of a bulk update's logging. A user's trail is read
#   rarely, in an investigation, which can build one first without blocking writes (CREATE
#   INDEX CONCURRENTLY ... (changed_by, changed_at DESC); README, "Change log").


# The locks the transactional part needs, in the application's order (see 0003), in two sets.
# The logs first: nothing writes them before 0005, so holding them blocks no one while the
# activity log is rebuilt. Then the CRM's tables, held only while the constraints go in. Both
# come after the pre-check, which only reads (it scans every row).
LOCK_LOGS = "LOCK TABLE public.user_activity_log, public.change_log IN ACCESS EXCLUSIVE MODE"
LOCKED = (
    "tasks",
    "communications",
    "orders",
    "order_items",
    "dispensary_profiles",
    "products",
    "profiles",
    "user_permissions",
)
LOCK_TABLES = "LOCK TABLE " + ", ".join(f"public.{t}" for t in LOCKED) + " IN ACCESS EXCLUSIVE MODE"


def _tables_in_order() -> list[str]:
    return list(dict.fromkeys(table for table, _, _ in CHECKS))


def _precheck() -> str:
    """One scan per table counting the rows each new constraint would reject."""
    blocks = []
    for table in _tables_in_order():
        checks = [(name, cond) for t, name, cond in CHECKS if t == table]
        counts = ", ".join(f"count(*) FILTER (WHERE NOT ({cond}))" for _, cond in checks)
        names = ", ".join(f"'{name}'" for name, _ in checks)
        blocks.append(
            f"    SELECT ARRAY[{counts}] INTO counts FROM public.{table};\n"
            f"    names := ARRAY[{names}];\n"
            "    FOR i IN 1..cardinality(names) LOOP\n"
            "        IF counts[i] > 0 THEN\n"
            "            problems := problems || format('%s: %s row(s)', names[i], counts[i]);\n"
            "        END IF;\n"
            "    END LOOP;\n"
        )
    return (
        "DO $precheck$\nDECLARE\n    counts bigint[];\n    names text[];\n"
        "    problems text[] := '{}';\nBEGIN\n"
        + "".join(blocks)
        + "    IF cardinality(problems) > 0 THEN\n"
        "        RAISE EXCEPTION 'existing rows violate the new constraints: %', "
        "array_to_string(problems, '; ')\n"
        "            USING ERRCODE = 'check_violation',\n"
        "                  HINT = 'Fix or remove those rows, then run the migration again; "
        "nothing was changed.';\n"
        "    END IF;\nEND\n$precheck$;\n"
    )


def _add_not_valid() -> str:
    return "".join(
        "DO $add$ BEGIN\n"
        f"    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conname = '{name}'\n"
        f"                   AND conrelid = 'public.{table}'::regclass) THEN\n"
        f"        ALTER TABLE public.{table} ADD CONSTRAINT {name} CHECK ({cond}) NOT VALID;\n"
        "    END IF;\nEND $add$;\n"
        for table, name, cond in CHECKS
    )


def _index_is_valid(name: str) -> bool:
    """Online only: True when an earlier, interrupted run already built this index."""
    if context.is_offline_mode():
        return False
    found = op.get_bind().execute(
        text("SELECT indisvalid FROM pg_catalog.pg_index WHERE indexrelid = to_regclass(:n)"),
        {"n": f"public.{name}"},
    )
    return found.scalar() is True


def _validate(table: str) -> str:
    names = [name for t, name, _ in CHECKS if t == table]
    return f"ALTER TABLE public.{table} " + ", ".join(f"VALIDATE CONSTRAINT {n}" for n in names)


def upgrade() -> None:
    op.execute(_precheck())
    op.execute(LOCK_LOGS)
    op.execute(PARTITION_FUNCTION)
    op.execute(PARTITION_ACTIVITY_LOG)
    op.execute(CHANGE_LOG_INDEXES)
    op.execute(LOCK_TABLES)
    op.execute(_add_not_valid())
    # Committed from here on, one statement at a time; each is safe to run again, so an
    # upgrade after an interruption finishes the job (the 0003 downgrade undoes it).
    with op.get_context().autocommit_block():
        for name, definition in CONCURRENT_INDEXES:
            if _index_is_valid(name):
                continue
            # A build that was interrupted leaves an invalid index behind: start afresh.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS public.{name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {definition}")
        for table in _tables_in_order():
            op.execute(_validate(table))


def downgrade() -> None:
    # Back to 0003's plain activity log, every logged row included (partitions and catch-all);
    # nothing writes it at this revision, so its lock blocks no one while the rows are copied.
    op.execute(LOCK_LOGS)
    op.execute(
        f"""
ALTER TABLE public.user_activity_log RENAME TO user_activity_log_partitioned;
ALTER INDEX public.user_activity_log_pkey RENAME TO user_activity_log_partitioned_pkey;
CREATE TABLE public.user_activity_log ({ACTIVITY_COLUMNS},
    CONSTRAINT user_activity_log_pkey PRIMARY KEY (id)
);
{ACTIVITY_COMMENT}
{ACTIVITY_GRANTS}
INSERT INTO public.user_activity_log ({ACTIVITY_COLUMN_NAMES})
    SELECT {ACTIVITY_COLUMN_NAMES} FROM public.user_activity_log_partitioned;
DROP TABLE public.user_activity_log_partitioned;
DROP FUNCTION public.ensure_activity_log_partitions(integer, date);
"""
    )
    op.execute(LOCK_TABLES)
    op.execute(
        "DROP INDEX "
        + ", ".join(f"public.{name}" for name, _ in reversed(CONCURRENT_INDEXES))
        + ";\nDROP INDEX public.change_log_record_idx;"
    )
    op.execute(
        "".join(
            f"ALTER TABLE public.{table} DROP CONSTRAINT {name};\n"
            for table, name, _ in reversed(CHECKS)
        )
    )
