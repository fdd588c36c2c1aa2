"""Phase 4: permission-based, soft-delete-aware Row Level Security on every table.

Revision ID: 0006_phase4_security_policies
Revises: 0005_phase3_functions_triggers
Create Date: 2026-11-24

How a CRM table's policies read (one permissive policy per table and command):

- the command needs its permission on the table's resource (``read`` for SELECT,
  ``create`` for INSERT, ``update`` for UPDATE; soft-deleting, an UPDATE that sets
  ``deleted_at``, needs ``delete``, except an order line's, which edits its order and needs
  ``update`` on ``order``), from the role defaults or a user override;
- the row must be in the user's scope: admins and managers reach every row (as in the
  baseline), agents the rows they own or that hang off the dispensaries assigned to them;
  an updated order or communication must stay the agent's own (orders: at its dispensary);
- soft-deleted rows are invisible to everyone but admins, who can restore them (the
  deleter still sees the row until the end of the deleting transaction, because
  PostgreSQL checks an updated row against the SELECT policies too);
- hard DELETE is for admins only (the phase 3 trigger also enforces it).

Every helper call is wrapped as ``(SELECT ...)`` so PostgreSQL evaluates it once per query
(an InitPlan), not once per row.

The new tables: ``role_permissions`` is readable by every signed-in user and writable by
holders of ``manage`` on ``permission`` for roles other than their own; ``user_permissions``
rows are readable by their user and by permission readers, writable by ``manage`` holders
but never for themselves (``granted_by`` defaults to, and must be, the writer; likewise a
role default's ``created_by``, which no one can change afterwards);
``user_activity_log`` is read-only (own rows, or everyone's with ``read`` on
``activity_log``) and written only through ``log_user_activity``; ``change_log`` is
read-only for holders of ``read`` on ``change_log`` and written only by triggers.

A guard trigger stops non-admins changing anyone's ``role`` or ``is_active``, creating
non-agent profiles, or deleting or restoring any profile. ``alembic_version`` gets RLS
and loses any API-role privileges (on Supabase, default privileges would expose it).

The downgrade puts the baseline's policies back exactly.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_phase4_security_policies"
down_revision: str | Sequence[str] | None = "0005_phase3_functions_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ME = "(SELECT auth.uid())"
ADMIN = "(SELECT public.is_admin())"
STAFF = "(SELECT public.current_user_role()) IN ('admin', 'manager')"
# PostgreSQL also checks an UPDATEd row against the SELECT policies. So that a user can
# soft-delete, the row stays visible to its deleter until the deleting transaction ends (the
# trigger pins deleted_at to now() and deleted_by to auth.uid()); then it is gone.
LIVE = f"(deleted_at IS NULL OR {ADMIN} OR (deleted_by = {ME} AND deleted_at >= now()))"
MY_DISPENSARIES = (
    f"(SELECT d.id FROM public.dispensary_profiles AS d WHERE d.assigned_agent_id = {ME})"
)


def can(permission: str, resource: str) -> str:
    return f"(SELECT public.current_user_has_permission('{permission}', '{resource}'))"


STAFF_OR = f"{STAFF} OR "
MY_ORDER_OR_DISPENSARY = f"agent_id = {ME} OR dispensary_id IN {MY_DISPENSARIES}"

# table -> (resource, rows it may read/update, rows it may insert, rows its owner may always
# read and update). Staff (admins, managers) reach every row, as in the baseline; profiles
# and products are shared reference data, scoped by permission alone.
SCOPES: dict[str, tuple[str, str, str, str | None]] = {
    "profiles": ("profile", "true", "true", f"id = {ME}"),
    "dispensary_profiles": (
        "dispensary",
        f"({STAFF_OR}assigned_agent_id = {ME})",
        f"({STAFF_OR}assigned_agent_id = {ME})",
        None,
    ),
    "products": ("product", "true", "true", None),
    "orders": (
        "order",
        f"({STAFF_OR}{MY_ORDER_OR_DISPENSARY})",
        f"({STAFF_OR}(agent_id = {ME} AND dispensary_id IN {MY_DISPENSARIES}))",
        None,
    ),
    "communications": (
        "communication",
        f"({STAFF_OR}{MY_ORDER_OR_DISPENSARY})",
        f"({STAFF_OR}(agent_id = {ME} AND dispensary_id IN {MY_DISPENSARIES}))",
        None,
    ),
    "tasks": (
        "task",
        f"({STAFF_OR}assigned_to = {ME} OR created_by = {ME})",
        f"({STAFF_OR}created_by = {ME})",
        None,
    ),
}

# Where an updated row must meet more than the read scope: as in the baseline, an agent
# cannot hand an order or communication to another agent, nor move an order to a
# dispensary that is not its own.
UPDATE_CHECKS = {
    "orders": f"({STAFF_OR}(agent_id = {ME} AND dispensary_id IN {MY_DISPENSARIES}))",
    "communications": f"({STAFF_OR}agent_id = {ME})",
}


# A deactivated or deleted user has no role: it may still read its own profile (so an app can
# say why it is locked out) but not edit it.
ACTIVE = "(SELECT public.current_user_role()) IS NOT NULL"


def _crm_policies(table: str) -> str:
    resource, scope, insert_scope, owner = SCOPES[table]
    read_ok = can("read", resource) if owner is None else f"({can('read', resource)} OR {owner})"
    update_ok = (
        can("update", resource)
        if owner is None
        else f"({can('update', resource)} OR ({owner} AND {ACTIVE}))"
    )
    soft_delete_ok = f"(deleted_at IS NULL OR {can('delete', resource)})"
    check_scope = UPDATE_CHECKS.get(table, scope)
    return f"""
CREATE POLICY {table}_select ON public.{table} FOR SELECT TO authenticated
    USING ({read_ok} AND {scope} AND {LIVE});
CREATE POLICY {table}_insert ON public.{table} FOR INSERT TO authenticated
    WITH CHECK ({can("create", resource)} AND {insert_scope} AND deleted_at IS NULL);
CREATE POLICY {table}_update ON public.{table} FOR UPDATE TO authenticated
    USING ({update_ok} AND {scope} AND {LIVE})
    WITH CHECK ({update_ok} AND {check_scope} AND {soft_delete_ok});
CREATE POLICY {table}_delete ON public.{table} FOR DELETE TO authenticated
    USING ({ADMIN});
"""


# Order lines follow their order: visible (and writable) exactly when the order is. EXISTS,
# not IN: each line looks up its own order by primary key. "order_id IN (SELECT id FROM
# orders)" would make every query find all the orders the user may see (a full scan).
# Removing (soft-deleting) a line is an edit of its order, so it needs update on order, not
# delete: the baseline let whoever sees an order delete its lines.
VISIBLE_ORDER = "EXISTS (SELECT 1 FROM public.orders AS o WHERE o.id = order_id)"
ORDER_ITEM_POLICIES = f"""
CREATE POLICY order_items_select ON public.order_items FOR SELECT TO authenticated
    USING ({can("read", "order")} AND {VISIBLE_ORDER} AND {LIVE});
CREATE POLICY order_items_insert ON public.order_items FOR INSERT TO authenticated
    WITH CHECK ({can("create", "order")} AND {VISIBLE_ORDER} AND deleted_at IS NULL);
CREATE POLICY order_items_update ON public.order_items FOR UPDATE TO authenticated
    USING ({can("update", "order")} AND {VISIBLE_ORDER} AND {LIVE})
    WITH CHECK ({can("update", "order")} AND {VISIBLE_ORDER});
CREATE POLICY order_items_delete ON public.order_items FOR DELETE TO authenticated
    USING ({ADMIN});
"""

NEW_TABLE_POLICIES = f"""
CREATE POLICY role_permissions_select ON public.role_permissions FOR SELECT TO authenticated
    USING (true);
CREATE POLICY role_permissions_insert ON public.role_permissions FOR INSERT TO authenticated
    WITH CHECK ({can("manage", "permission")} AND created_by = {ME}
                AND ({ADMIN} OR role <> (SELECT public.current_user_role())));
CREATE POLICY role_permissions_update ON public.role_permissions FOR UPDATE TO authenticated
    USING ({can("manage", "permission")}
           AND ({ADMIN} OR role <> (SELECT public.current_user_role())))
    WITH CHECK ({can("manage", "permission")}
                AND ({ADMIN} OR role <> (SELECT public.current_user_role())));
CREATE POLICY role_permissions_delete ON public.role_permissions FOR DELETE TO authenticated
    USING ({can("manage", "permission")}
           AND ({ADMIN} OR role <> (SELECT public.current_user_role())));

CREATE POLICY user_permissions_select ON public.user_permissions FOR SELECT TO authenticated
    USING (user_id = {ME} OR {can("read", "permission")});
CREATE POLICY user_permissions_insert ON public.user_permissions FOR INSERT TO authenticated
    WITH CHECK ({can("manage", "permission")} AND user_id <> {ME} AND granted_by = {ME});
CREATE POLICY user_permissions_update ON public.user_permissions FOR UPDATE TO authenticated
    USING ({can("manage", "permission")} AND user_id <> {ME})
    WITH CHECK ({can("manage", "permission")} AND user_id <> {ME} AND granted_by = {ME});
CREATE POLICY user_permissions_delete ON public.user_permissions FOR DELETE TO authenticated
    USING ({can("manage", "permission")} AND user_id <> {ME});

CREATE POLICY user_activity_log_select ON public.user_activity_log FOR SELECT TO authenticated
    USING (user_id = {ME} OR {can("read", "activity_log")});

CREATE POLICY change_log_select ON public.change_log FOR SELECT TO authenticated
    USING ({can("read", "change_log")});
"""

# Who wrote a permission row is the database's to say: granted_by and created_by default to
# the writer and the policies insist on it; a role default's creator cannot be rewritten
# later (UPDATE is granted on the columns that say what the default is, not on created_by).
NEW_TABLE_GRANTS = """
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.user_permissions TO authenticated;
GRANT SELECT, INSERT, DELETE ON TABLE public.role_permissions TO authenticated;
GRANT UPDATE (role, permission, resource) ON TABLE public.role_permissions TO authenticated;
GRANT SELECT ON TABLE public.user_activity_log, public.change_log TO authenticated;
ALTER TABLE public.user_permissions ALTER COLUMN granted_by SET DEFAULT auth.uid();
ALTER TABLE public.role_permissions ALTER COLUMN created_by SET DEFAULT auth.uid();
"""

PROFILE_GUARD = r"""
CREATE FUNCTION public.guard_profile_privileges() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $fn$
BEGIN
    IF NOT public.request_is_end_user() OR public.is_admin() THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.role <> 'agent' OR NOT NEW.is_active THEN
            RAISE EXCEPTION 'permission denied: only an admin can create a % profile', NEW.role
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.role IS DISTINCT FROM OLD.role OR NEW.is_active IS DISTINCT FROM OLD.is_active THEN
        RAISE EXCEPTION 'permission denied: only an admin can change role or is_active'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Deleting a user switches it off like is_active does (an admin deleted by a delegate
    -- would be locked out), so it is for admins too.
    IF NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
        RAISE EXCEPTION 'permission denied: only an admin can delete or restore a profile'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.guard_profile_privileges() FROM PUBLIC, anon, authenticated;
CREATE TRIGGER profiles_guard_privileges BEFORE INSERT OR UPDATE ON public.profiles
    FOR EACH ROW EXECUTE FUNCTION public.guard_profile_privileges();
"""

# Alembic's bookkeeping table is not for the API: on Supabase, default privileges grant
# anon and authenticated everything on new tables in public, this one included.
ALEMBIC_VERSION = """
ALTER TABLE public.alembic_version ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE public.alembic_version FROM anon, authenticated;
CREATE POLICY no_api_access ON public.alembic_version AS RESTRICTIVE
    FOR ALL TO public USING (false) WITH CHECK (false);
"""

CRM_TABLES = (*SCOPES, "order_items")
BASELINE_POLICY_TABLES = (
    "profiles",
    "dispensary_profiles",
    "products",
    "orders",
    "order_items",
    "communications",
    "tasks",
)
COMMANDS = ("select", "insert", "update", "delete")

# On Supabase, default privileges also hand the API roles TRUNCATE (which skips RLS and every
# trigger), REFERENCES and TRIGGER on the baseline tables, every right on the identity
# sequences, and anon the baseline's role helper. None of it is needed. A sequence is only
# touched where something was granted: revoking from its default ACL would write one out.
BASELINE_TABLES = ", ".join(f"public.{t}" for t in BASELINE_POLICY_TABLES)
API_PRIVILEGES = f"""
REVOKE TRUNCATE, REFERENCES, TRIGGER ON TABLE {BASELINE_TABLES} FROM anon, authenticated;
REVOKE EXECUTE ON FUNCTION public.current_user_role() FROM anon;
DO $revoke$
DECLARE
    seq regclass;
BEGIN
    FOR seq IN
        SELECT c.oid FROM pg_catalog.pg_class AS c, aclexplode(c.relacl) AS a
         WHERE c.oid IN (pg_get_serial_sequence('public.orders', 'order_number')::regclass,
                         pg_get_serial_sequence('public.change_log', 'id')::regclass)
           AND a.grantee IN ('anon'::regrole, 'authenticated'::regrole)
    LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM anon, authenticated', seq);
    END LOOP;
END
$revoke$;
"""

# The baseline's policies, verbatim, for the downgrade.
B_STAFF = "(SELECT public.current_user_role()) IN ('admin', 'manager')"
B_ADMIN = "(SELECT public.current_user_role()) = 'admin'"
B_MY_DISPENSARY = (
    "EXISTS (SELECT 1 FROM public.dispensary_profiles AS d "
    f"WHERE d.id = dispensary_id AND d.assigned_agent_id = {ME})"
)
B_VISIBLE_ORDER = "EXISTS (SELECT 1 FROM public.orders AS o WHERE o.id = order_id)"
BASELINE_POLICIES = f"""
CREATE POLICY profiles_select ON public.profiles FOR SELECT TO authenticated
    USING (true);
CREATE POLICY profiles_insert ON public.profiles FOR INSERT TO authenticated
    WITH CHECK ({B_ADMIN});
CREATE POLICY profiles_update ON public.profiles FOR UPDATE TO authenticated
    USING ({B_ADMIN} OR id = {ME})
    WITH CHECK ({B_ADMIN} OR (id = {ME} AND role = (SELECT public.current_user_role())));
CREATE POLICY profiles_delete ON public.profiles FOR DELETE TO authenticated
    USING ({B_ADMIN});

CREATE POLICY dispensary_profiles_select ON public.dispensary_profiles FOR SELECT TO authenticated
    USING ({B_STAFF} OR assigned_agent_id = {ME});
CREATE POLICY dispensary_profiles_insert ON public.dispensary_profiles FOR INSERT TO authenticated
    WITH CHECK ({B_STAFF} OR assigned_agent_id = {ME});
CREATE POLICY dispensary_profiles_update ON public.dispensary_profiles FOR UPDATE TO authenticated
    USING ({B_STAFF} OR assigned_agent_id = {ME})
    WITH CHECK ({B_STAFF} OR assigned_agent_id = {ME});
CREATE POLICY dispensary_profiles_delete ON public.dispensary_profiles FOR DELETE TO authenticated
    USING ({B_ADMIN});

CREATE POLICY products_select ON public.products FOR SELECT TO authenticated
    USING (true);
CREATE POLICY products_insert ON public.products FOR INSERT TO authenticated
    WITH CHECK ({B_ADMIN});
CREATE POLICY products_update ON public.products FOR UPDATE TO authenticated
    USING ({B_ADMIN}) WITH CHECK ({B_ADMIN});
CREATE POLICY products_delete ON public.products FOR DELETE TO authenticated
    USING ({B_ADMIN});

CREATE POLICY orders_select ON public.orders FOR SELECT TO authenticated
    USING ({B_STAFF} OR agent_id = {ME} OR {B_MY_DISPENSARY});
CREATE POLICY orders_insert ON public.orders FOR INSERT TO authenticated
    WITH CHECK ({B_STAFF} OR (agent_id = {ME} AND {B_MY_DISPENSARY}));
CREATE POLICY orders_update ON public.orders FOR UPDATE TO authenticated
    USING ({B_STAFF} OR agent_id = {ME})
    WITH CHECK ({B_STAFF} OR (agent_id = {ME} AND {B_MY_DISPENSARY}));
CREATE POLICY orders_delete ON public.orders FOR DELETE TO authenticated
    USING ({B_ADMIN});

CREATE POLICY order_items_select ON public.order_items FOR SELECT TO authenticated
    USING ({B_VISIBLE_ORDER});
CREATE POLICY order_items_insert ON public.order_items FOR INSERT TO authenticated
    WITH CHECK ({B_VISIBLE_ORDER});
CREATE POLICY order_items_update ON public.order_items FOR UPDATE TO authenticated
    USING ({B_VISIBLE_ORDER}) WITH CHECK ({B_VISIBLE_ORDER});
CREATE POLICY order_items_delete ON public.order_items FOR DELETE TO authenticated
    USING ({B_VISIBLE_ORDER});

CREATE POLICY communications_select ON public.communications FOR SELECT TO authenticated
    USING ({B_STAFF} OR agent_id = {ME} OR {B_MY_DISPENSARY});
CREATE POLICY communications_insert ON public.communications FOR INSERT TO authenticated
    WITH CHECK ({B_STAFF} OR (agent_id = {ME} AND {B_MY_DISPENSARY}));
CREATE POLICY communications_update ON public.communications FOR UPDATE TO authenticated
    USING ({B_STAFF} OR agent_id = {ME})
    WITH CHECK ({B_STAFF} OR agent_id = {ME});
CREATE POLICY communications_delete ON public.communications FOR DELETE TO authenticated
    USING ({B_ADMIN} OR agent_id = {ME});

CREATE POLICY tasks_select ON public.tasks FOR SELECT TO authenticated
    USING ({B_STAFF} OR assigned_to = {ME} OR created_by = {ME});
CREATE POLICY tasks_insert ON public.tasks FOR INSERT TO authenticated
    WITH CHECK ({B_STAFF} OR created_by = {ME});
CREATE POLICY tasks_update ON public.tasks FOR UPDATE TO authenticated
    USING ({B_STAFF} OR assigned_to = {ME} OR created_by = {ME})
    WITH CHECK ({B_STAFF} OR assigned_to = {ME} OR created_by = {ME});
CREATE POLICY tasks_delete ON public.tasks FOR DELETE TO authenticated
    USING ({B_ADMIN} OR created_by = {ME});
"""


def _drop_policies(tables: Sequence[str], commands: Sequence[str] = COMMANDS) -> str:
    return "".join(f"DROP POLICY {t}_{c} ON public.{t};\n" for t in tables for c in commands)


# This revision's policies need the default role permissions that 0007 inserts: committed
# alone, every agent would see nothing until 0007 ran. So env.py runs the two in one
# transaction (upgrading and downgrading) and refuses to stop between them.
commit_with_next = True

# Every lock the two revisions need, taken first, in the application's order (see 0003).
LOCKED = (
    "tasks",
    "communications",
    "orders",
    "order_items",
    "dispensary_profiles",
    "products",
    "profiles",
    "user_permissions",
    "role_permissions",
    "user_activity_log",
    "change_log",
    "alembic_version",
)
LOCK_TABLES = "LOCK TABLE " + ", ".join(f"public.{t}" for t in LOCKED) + " IN ACCESS EXCLUSIVE MODE"


def upgrade() -> None:
    op.execute(LOCK_TABLES)
    op.execute(_drop_policies(BASELINE_POLICY_TABLES))
    op.execute("".join(_crm_policies(t) for t in SCOPES) + ORDER_ITEM_POLICIES)
    op.execute(NEW_TABLE_POLICIES)
    op.execute(NEW_TABLE_GRANTS)
    op.execute(API_PRIVILEGES)
    op.execute(PROFILE_GUARD)
    op.execute(ALEMBIC_VERSION)


def downgrade() -> None:
    # alembic_version, and API_PRIVILEGES' revocations, stay: what was granted before is not
    # known, and no API role ever needs it.
    op.execute(LOCK_TABLES)
    op.execute(
        "DROP POLICY no_api_access ON public.alembic_version;\n"
        "ALTER TABLE public.alembic_version DISABLE ROW LEVEL SECURITY;\n"
        "DROP TRIGGER profiles_guard_privileges ON public.profiles;\n"
        "DROP FUNCTION public.guard_profile_privileges();\n"
        "ALTER TABLE public.user_permissions ALTER COLUMN granted_by DROP DEFAULT;\n"
        "ALTER TABLE public.role_permissions ALTER COLUMN created_by DROP DEFAULT;\n"
        "REVOKE ALL ON TABLE public.role_permissions, public.user_permissions, "
        "public.user_activity_log, public.change_log FROM authenticated;\n"
        "DROP POLICY change_log_select ON public.change_log;\n"
        "DROP POLICY user_activity_log_select ON public.user_activity_log;\n"
        + _drop_policies(("role_permissions", "user_permissions"))
        + _drop_policies(CRM_TABLES)
    )
    op.execute(BASELINE_POLICIES)
