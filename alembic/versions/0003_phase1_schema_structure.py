"""Phase 1: permission and audit enums, the four new tables, tracking columns.

Revision ID: 0003_phase1_schema_structure
Revises: 0002_crm_baseline
Create Date: 2026-11-24

New enum types ``permission_type``, ``resource_type``, ``activity_type`` and
``change_operation``; tables ``role_permissions``, ``user_permissions``,
``user_activity_log`` and ``change_log``; ``profiles`` gains ``deleted_at``, ``deleted_by``,
``is_active``, ``metadata``, ``last_login_at`` and ``login_count``; every tracked table gains
``version``, ``edit_count``, ``updated_by``, ``deleted_at``, ``deleted_by`` (and ``metadata``
except ``order_items``).

Every new column is nullable or has a constant default, so PostgreSQL 11+ adds it without
rewriting the table: existing rows read ``is_active = true``, ``version = 1``,
``edit_count = 0``, ``login_count = 0``, ``metadata = '{}'`` at once.

The new tables are created locked: RLS on and no privileges for the API roles, so nothing is
reachable through PostgREST until phase 4 (``0006``) adds the policies and grants.

Columns naming who did something (``granted_by``, ``updated_by``, ``changed_by`` ...) have no
foreign key on purpose: they are audit facts that must outlive the user they name, and a
foreign key would cost an index on every large table and a cascade on every user deletion.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_phase1_schema_structure"
down_revision: str | Sequence[str] | None = "0002_crm_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRACKED_TABLES = (
    "profiles",
    "dispensary_profiles",
    "products",
    "orders",
    "order_items",
    "communications",
    "tasks",
)
WITH_METADATA = tuple(t for t in TRACKED_TABLES if t != "order_items")
NEW_TABLES = ("role_permissions", "user_permissions", "user_activity_log", "change_log")

TYPES = r"""
CREATE TYPE public.permission_type AS ENUM (
    'read', 'create', 'update', 'delete', 'export', 'manage'
);
CREATE TYPE public.resource_type AS ENUM (
    'profile', 'dispensary', 'product', 'order', 'communication', 'task',
    'permission', 'activity_log', 'change_log', 'report', 'system'
);
CREATE TYPE public.activity_type AS ENUM (
    'login', 'logout', 'login_failed', 'password_reset',
    'view', 'create', 'update', 'delete', 'soft_delete', 'restore', 'export',
    'permission_granted', 'permission_revoked', 'role_changed', 'report_run', 'system'
);
CREATE TYPE public.change_operation AS ENUM (
    'insert', 'update', 'delete', 'soft_delete', 'restore'
);
"""

TABLES = r"""
CREATE TABLE public.role_permissions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    role public.user_role NOT NULL,
    permission public.permission_type NOT NULL,
    resource public.resource_type NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (role, permission, resource)
);
COMMENT ON TABLE public.role_permissions IS
    'What each role may do on each resource by default; user_permissions overrides it.';

CREATE TABLE public.user_permissions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
    permission public.permission_type NOT NULL,
    resource public.resource_type NOT NULL,
    granted boolean NOT NULL DEFAULT true,
    expires_at timestamptz,
    granted_by uuid,
    reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, permission, resource)
);
COMMENT ON TABLE public.user_permissions IS
    'Per-user overrides of the role defaults: granted = true allows, false denies; '
    'an expired row (expires_at in the past) no longer applies.';

CREATE TABLE public.user_activity_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid,
    activity public.activity_type NOT NULL,
    resource public.resource_type,
    resource_id uuid,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip_address inet,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.user_activity_log IS
    'What users did (logins, views, exports ...), written through public.log_user_activity.';

CREATE TABLE public.change_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    record_id uuid NOT NULL,
    operation public.change_operation NOT NULL,
    old_values jsonb,
    new_values jsonb,
    changed_columns text[],
    changed_by uuid,
    changed_at timestamptz NOT NULL DEFAULT now(),
    transaction_id bigint NOT NULL DEFAULT txid_current()
);
COMMENT ON TABLE public.change_log IS
    'One row per real change to a tracked table, written by triggers only.';
"""


# Until phase 4 opens them, only service_role reaches the new tables, and it may not edit the
# audit logs: change_log is written by triggers, user_activity_log by log_user_activity().
SERVICE_ROLE_GRANTS = {
    "role_permissions": "SELECT, INSERT, UPDATE, DELETE",
    "user_permissions": "SELECT, INSERT, UPDATE, DELETE",
    "user_activity_log": "SELECT",
    "change_log": "SELECT",
}


def _lock_down(table: str) -> str:
    return (
        f"ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY;\n"
        f"REVOKE ALL ON TABLE public.{table} FROM anon, authenticated, service_role;\n"
        f"GRANT {SERVICE_ROLE_GRANTS[table]} ON TABLE public.{table} TO service_role;\n"
    )


def _tracking_columns(table: str) -> str:
    extra = (
        ",\n    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb"
        if table in WITH_METADATA
        else ""
    )
    profile_only = (
        ",\n    ADD COLUMN is_active boolean NOT NULL DEFAULT true"
        ",\n    ADD COLUMN last_login_at timestamptz"
        ",\n    ADD COLUMN login_count integer NOT NULL DEFAULT 0"
        if table == "profiles"
        else ""
    )
    return (
        f"ALTER TABLE public.{table}\n"
        "    ADD COLUMN version integer NOT NULL DEFAULT 1,\n"
        "    ADD COLUMN edit_count integer NOT NULL DEFAULT 0,\n"
        "    ADD COLUMN updated_by uuid,\n"
        "    ADD COLUMN deleted_at timestamptz,\n"
        f"    ADD COLUMN deleted_by uuid{extra}{profile_only};\n"
    )


def _drop_tracking_columns(table: str) -> str:
    columns = ["version", "edit_count", "updated_by", "deleted_at", "deleted_by"]
    if table in WITH_METADATA:
        columns.append("metadata")
    if table == "profiles":
        columns += ["is_active", "last_login_at", "login_count"]
    drops = ",\n    ".join(f"DROP COLUMN {c}" for c in columns)
    return f"ALTER TABLE public.{table}\n    {drops};\n"


# Every lock this revision needs, taken first and in one order: env.py retries the whole
# transaction with a short lock_timeout until it gets them all, so it never queues the
# application behind it for long.
# The order is the one the application's own transactions take locks in: a statement locks
# its table first, then the tables it refers to (RLS subqueries, foreign-key checks, the policy
# helpers reading profiles and the permission tables, the change-log trigger last); an order's
# lines come after their order. Taking them in that order, a migration never holds a table that
# an in-flight request still needs while it waits for one that request holds.
LOCK_ORDER = (
    "tasks",
    "communications",
    "orders",
    "order_items",
    "dispensary_profiles",
    "products",
    "profiles",
)
LOCK_CRM_TABLES = (
    "LOCK TABLE " + ", ".join(f"public.{t}" for t in LOCK_ORDER) + " IN ACCESS EXCLUSIVE MODE"
)
LOCK_ALL_TABLES = LOCK_CRM_TABLES.replace(
    " IN ACCESS",
    ", public.user_permissions, public.role_permissions, public.user_activity_log, "
    "public.change_log IN ACCESS",
)

# Revision 0004 commits in two steps: its indexes are built CONCURRENTLY, outside a
# transaction. A run stopped between them leaves its first step in place while the database
# is still recorded at this revision. Rolling back from there must remove that too: the
# CHECK constraints on baseline columns and the partition function. (Its other constraints
# and indexes go with the columns and tables dropped below; its partitioned activity log goes
# with the table.) On a database where 0004 was downgraded normally these find nothing.
PHASE2_CHECKS_ON_BASELINE_COLUMNS = {
    "profiles": (
        "profiles_email_length_check",
        "profiles_full_name_length_check",
        "profiles_phone_length_check",
        "profiles_territory_length_check",
        "profiles_email_format_check",
    ),
    "dispensary_profiles": (
        "dispensary_profiles_name_length_check",
        "dispensary_profiles_dba_name_length_check",
        "dispensary_profiles_contact_name_length_check",
        "dispensary_profiles_phone_length_check",
        "dispensary_profiles_email_length_check",
        "dispensary_profiles_address_line1_length_check",
        "dispensary_profiles_address_line2_length_check",
        "dispensary_profiles_city_length_check",
        "dispensary_profiles_county_length_check",
        "dispensary_profiles_notes_length_check",
        "dispensary_profiles_email_format_check",
        "dispensary_profiles_license_number_format_check",
        "dispensary_profiles_state_check",
        "dispensary_profiles_postal_code_check",
    ),
    "products": (
        "products_name_length_check",
        "products_sku_length_check",
        "products_brand_length_check",
        "products_description_length_check",
        "products_unit_size_length_check",
        "products_unit_price_check",
        "products_thc_percent_check",
        "products_cbd_percent_check",
    ),
    "orders": (
        "orders_notes_length_check",
        "orders_total_amount_check",
    ),
    "order_items": (
        "order_items_quantity_check",
        "order_items_unit_price_check",
    ),
    "communications": (
        "communications_subject_length_check",
        "communications_body_length_check",
    ),
    "tasks": (
        "tasks_title_length_check",
        "tasks_description_length_check",
    ),
}


def _phase2_leftovers() -> str:
    drops = "".join(
        f"ALTER TABLE public.{table} "
        + ", ".join(f"DROP CONSTRAINT IF EXISTS {name}" for name in names)
        + ";\n"
        for table, names in PHASE2_CHECKS_ON_BASELINE_COLUMNS.items()
    )
    return drops + "DROP FUNCTION IF EXISTS public.ensure_activity_log_partitions(integer, date);\n"


def upgrade() -> None:
    op.execute(LOCK_CRM_TABLES)
    op.execute(TYPES)
    op.execute(TABLES)
    op.execute("".join(_lock_down(t) for t in NEW_TABLES))
    op.execute("".join(_tracking_columns(t) for t in TRACKED_TABLES))


def downgrade() -> None:
    op.execute(LOCK_ALL_TABLES)
    op.execute(_phase2_leftovers())
    op.execute("".join(_drop_tracking_columns(t) for t in reversed(TRACKED_TABLES)))
    op.execute("DROP TABLE " + ", ".join(f"public.{t}" for t in reversed(NEW_TABLES)) + ";")
    op.execute(
        "DROP TYPE public.change_operation, public.activity_type, public.resource_type, "
        "public.permission_type;"
    )
