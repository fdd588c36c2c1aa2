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
  baseline); agents read the rows that hang off the dispensaries assigned to them, and
  write only what they own there (orders and communications they placed, tasks they
  created; an assignee may only move its task's status along), and every update must leave
  a row the writer could insert, so nothing is taken over or moved out of anyone's scope;
  order lines follow their order's update rule;
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

Columns: ``authenticated`` may INSERT and UPDATE only the columns a user writes; identity
and bookkeeping columns (``id``, ``created_at``, ``created_by``, ``order_number``,
``granted_by``, the tracking and login columns, ``profiles.email``) are the database's.

A guard trigger stops non-admins changing anyone's ``role`` or ``is_active``, creating
non-agent profiles, or deleting or restoring any profile; role and permission changes are
recorded in the activity log by triggers, with the real actor. Profiles follow Supabase
Auth: a new ``auth.users`` row gets its ``agent`` profile and ``profiles.email`` follows
``auth.users.email`` (a SECURITY DEFINER trigger function in schema ``private``).
``alembic_version`` gets RLS and loses any API-role privileges (on Supabase, default
privileges would expose it). docs/access-model.md is the whole model.

Committed together with 0007 (``commit_with_next``): these policies need its default role
permissions.

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
# The policies call 0005's private helper directly (authenticated may execute it), not its
# public entry point: one function call fewer per query.
STAFF = "(SELECT private.current_user_role()) IN ('admin', 'manager')"
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
MINE = f"dispensary_id IN {MY_DISPENSARIES}"

# docs/access-model.md is the reviewed form of these rules. Staff (admins, managers) reach
# every row, as in the baseline; profiles and products are shared reference data, scoped by
# permission alone. An agent reads what it owns and what hangs off its dispensaries, but
# writes only what it owns at its dispensaries: so no update can take a row over, or move
# one into or out of anyone's scope (the update check is the insert check).
READ_SCOPES = {
    "profiles": "true",
    "dispensary_profiles": f"({STAFF_OR}assigned_agent_id = {ME})",
    "products": "true",
    "orders": f"({STAFF_OR}agent_id = {ME} OR {MINE})",
    "communications": f"({STAFF_OR}agent_id = {ME} OR {MINE})",
    "tasks": f"({STAFF_OR}assigned_to = {ME} OR created_by = {ME})",
}
# A task an agent creates is its own (created_by is the database's), at one of its
# dispensaries or none, and assigned to itself or no one.
OWN_TASK = (
    f"created_by = {ME} AND (assigned_to IS NULL OR assigned_to = {ME}) "
    f"AND (dispensary_id IS NULL OR {MINE})"
)
WRITE_SCOPES = {
    "profiles": "true",
    "dispensary_profiles": f"({STAFF_OR}assigned_agent_id = {ME})",
    "products": "true",
    "orders": f"({STAFF_OR}(agent_id = {ME} AND {MINE}))",
    "communications": f"({STAFF_OR}(agent_id = {ME} AND {MINE}))",
    "tasks": f"({STAFF_OR}({OWN_TASK}))",
}
# Where updating reaches further than inserting: the assignee of a task reports progress on
# it (tasks_guard_assignee limits it to status and completed_at).
UPDATE_SCOPES = {
    **WRITE_SCOPES,
    "tasks": (
        f"({STAFF_OR}({OWN_TASK}) OR (assigned_to = {ME} AND created_by IS DISTINCT FROM {ME}))"
    ),
}
# Soft delete also needs the delete permission; as in the baseline, only an admin removes
# someone else's communication or task.
DELETE_SCOPES = {
    "communications": f"({ADMIN} OR agent_id = {ME})",
    "tasks": f"({ADMIN} OR created_by = {ME})",
}
RESOURCES = {
    "profiles": "profile",
    "dispensary_profiles": "dispensary",
    "products": "product",
    "orders": "order",
    "communications": "communication",
    "tasks": "task",
}
# Its own profile a user may always read, and edit while active.
OWNERS = {"profiles": f"id = {ME}"}
SCOPES = RESOURCES  # the tables with policies of this shape, in order


# A deactivated or deleted user has no role: it may still read its own profile (so an app can
# say why it is locked out) but not edit it.
ACTIVE = "(SELECT private.current_user_role()) IS NOT NULL"


def _crm_policies(table: str) -> str:
    resource, owner = RESOURCES[table], OWNERS.get(table)
    read_ok = can("read", resource) if owner is None else f"({can('read', resource)} OR {owner})"
    update_ok = (
        can("update", resource)
        if owner is None
        else f"({can('update', resource)} OR ({owner} AND {ACTIVE}))"
    )
    delete_scope = DELETE_SCOPES.get(table, "true")
    soft_delete_ok = f"(deleted_at IS NULL OR ({can('delete', resource)} AND {delete_scope}))"
    write, update = WRITE_SCOPES[table], UPDATE_SCOPES[table]
    return f"""
CREATE POLICY {table}_select ON public.{table} FOR SELECT TO authenticated
    USING ({read_ok} AND {READ_SCOPES[table]} AND {LIVE});
CREATE POLICY {table}_insert ON public.{table} FOR INSERT TO authenticated
    WITH CHECK ({can("create", resource)} AND {write} AND deleted_at IS NULL);
CREATE POLICY {table}_update ON public.{table} FOR UPDATE TO authenticated
    USING ({update_ok} AND {update} AND {LIVE})
    WITH CHECK ({update_ok} AND {update} AND {soft_delete_ok});
CREATE POLICY {table}_delete ON public.{table} FOR DELETE TO authenticated
    USING ({ADMIN});
"""


# Order lines follow their order: readable when the order is, and written (added, changed,
# removed) only by whoever may update the order, under the order's update rule. EXISTS, not
# IN: each line looks up its own order by primary key. "order_id IN (SELECT id FROM orders)"
# would make every query find all the orders the user may see (a full scan).
VISIBLE_ORDER = "EXISTS (SELECT 1 FROM public.orders AS o WHERE o.id = order_id)"
WRITABLE_ORDER = (
    "EXISTS (SELECT 1 FROM public.orders AS o WHERE o.id = order_id AND "
    f"({STAFF_OR}(o.agent_id = {ME} AND o.dispensary_id IN {MY_DISPENSARIES})))"
)
ORDER_ITEM_POLICIES = f"""
CREATE POLICY order_items_select ON public.order_items FOR SELECT TO authenticated
    USING ({can("read", "order")} AND {VISIBLE_ORDER} AND {LIVE});
CREATE POLICY order_items_insert ON public.order_items FOR INSERT TO authenticated
    WITH CHECK ({can("update", "order")} AND {WRITABLE_ORDER} AND deleted_at IS NULL);
CREATE POLICY order_items_update ON public.order_items FOR UPDATE TO authenticated
    USING ({can("update", "order")} AND {WRITABLE_ORDER} AND {LIVE})
    WITH CHECK ({can("update", "order")} AND {WRITABLE_ORDER});
CREATE POLICY order_items_delete ON public.order_items FOR DELETE TO authenticated
    USING ({ADMIN});
"""

NEW_TABLE_POLICIES = f"""
CREATE POLICY role_permissions_select ON public.role_permissions FOR SELECT TO authenticated
    USING (true);
CREATE POLICY role_permissions_insert ON public.role_permissions FOR INSERT TO authenticated
    WITH CHECK ({can("manage", "permission")} AND created_by = {ME}
                AND ({ADMIN} OR role <> (SELECT private.current_user_role())));
CREATE POLICY role_permissions_update ON public.role_permissions FOR UPDATE TO authenticated
    USING ({can("manage", "permission")}
           AND ({ADMIN} OR role <> (SELECT private.current_user_role())))
    WITH CHECK ({can("manage", "permission")}
                AND ({ADMIN} OR role <> (SELECT private.current_user_role())));
CREATE POLICY role_permissions_delete ON public.role_permissions FOR DELETE TO authenticated
    USING ({can("manage", "permission")}
           AND ({ADMIN} OR role <> (SELECT private.current_user_role())));

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
# the writer, a trigger stamps granted_by on every API write and the policies insist on it;
# neither column (nor created_at) is granted to the API, so neither can be forged or rewritten.
NEW_TABLE_GRANTS = """
GRANT SELECT, DELETE ON TABLE public.user_permissions TO authenticated;
GRANT INSERT (user_id, permission, resource, granted, expires_at, reason)
    ON TABLE public.user_permissions TO authenticated;
GRANT UPDATE (permission, resource, granted, expires_at, reason)
    ON TABLE public.user_permissions TO authenticated;
GRANT SELECT, DELETE ON TABLE public.role_permissions TO authenticated;
GRANT INSERT (role, permission, resource), UPDATE (role, permission, resource)
    ON TABLE public.role_permissions TO authenticated;
GRANT SELECT ON TABLE public.user_activity_log, public.change_log TO authenticated;
ALTER TABLE public.user_permissions ALTER COLUMN granted_by SET DEFAULT auth.uid();
ALTER TABLE public.role_permissions ALTER COLUMN created_by SET DEFAULT auth.uid();
"""

WRITER_STAMPS = r"""
-- Whoever last granted or changed an override through the API is its granted_by.
CREATE FUNCTION public.stamp_granted_by() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $fn$
BEGIN
    IF public.request_is_end_user() THEN
        NEW.granted_by := auth.uid();
    END IF;
    RETURN NEW;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.stamp_granted_by() FROM PUBLIC, anon, authenticated;
CREATE TRIGGER user_permissions_stamp_granted_by BEFORE INSERT OR UPDATE
    ON public.user_permissions FOR EACH ROW EXECUTE FUNCTION public.stamp_granted_by();

-- The assignee of someone else's task reports progress on it (status, completed_at); what
-- the task is, whom it is for and whether it exists stay its creator's (and staff's).
CREATE FUNCTION public.guard_task_assignee() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $fn$
DECLARE
    progress constant text[] := ARRAY['status', 'completed_at', 'updated_at', 'updated_by',
                                      'version', 'edit_count'];
BEGIN
    -- pg_trigger_depth() > 1: a foreign key's action (the assignee's profile was removed).
    IF NOT public.request_is_end_user() OR pg_catalog.pg_trigger_depth() > 1
       OR public.current_user_role() IN ('admin', 'manager')
       OR OLD.created_by IS NOT DISTINCT FROM auth.uid() THEN
        RETURN NEW;
    END IF;
    IF (to_jsonb(NEW) - progress) IS DISTINCT FROM (to_jsonb(OLD) - progress) THEN
        RAISE EXCEPTION 'permission denied: the assignee of a task may change only its status '
                        'and completed_at' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.guard_task_assignee() FROM PUBLIC, anon, authenticated;
CREATE TRIGGER tasks_guard_assignee BEFORE UPDATE ON public.tasks
    FOR EACH ROW EXECUTE FUNCTION public.guard_task_assignee();
"""

# Functions that must bypass RLS and are not for the API live in schema private (0005 makes
# it): PostgREST does not expose it, anon has no USAGE on it, and these are executable by no
# API role.
PRIVATE_SCHEMA = r"""

-- Supabase Auth owns who a user is: a new auth.users row gets its profile (role agent,
-- active, full_name from the sign-up's user metadata), and profiles.email follows
-- auth.users.email. A user without an e-mail (phone sign-up) gets its profile when it adds
-- one. to_jsonb(NEW): the shim's auth.users and Supabase's do not have the same columns.
CREATE FUNCTION private.profile_from_auth_user() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = ''
AS $fn$
BEGIN
    IF NEW.email IS NOT NULL THEN
        INSERT INTO public.profiles (id, email, full_name)
        VALUES (NEW.id, NEW.email,
                left(nullif(btrim(to_jsonb(NEW) -> 'raw_user_meta_data' ->> 'full_name'), ''),
                     200))
        ON CONFLICT (id) DO UPDATE SET email = excluded.email
            WHERE public.profiles.email IS DISTINCT FROM excluded.email;
    END IF;
    RETURN NULL;
END
$fn$;
REVOKE EXECUTE ON FUNCTION private.profile_from_auth_user()
    FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER crm_profile_from_auth_user AFTER INSERT OR UPDATE OF email ON auth.users
    FOR EACH ROW EXECUTE FUNCTION private.profile_from_auth_user();

-- Privileged events are the database's to record: a role change, and every permission
-- granted, changed or revoked through the API, with the real actor.
CREATE FUNCTION private.log_privileged_activity() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = ''
AS $fn$
DECLARE
    changed jsonb;
    event public.activity_type;
BEGIN
    -- Direct database sessions (migrations, DBA scripts) are in change_log already.
    IF auth.role() IS NULL
       AND current_setting('role', true) NOT IN ('anon', 'authenticated', 'service_role') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSE
        changed := to_jsonb(NEW);
    END IF;
    IF TG_TABLE_NAME = 'profiles' THEN
        event := 'role_changed';
        changed := jsonb_build_object('user_id', NEW.id, 'from', OLD.role, 'to', NEW.role);
    ELSIF TG_OP <> 'DELETE' AND coalesce((changed ->> 'granted')::boolean, true) THEN
        event := 'permission_granted';
    ELSE
        event := 'permission_revoked';
    END IF;
    INSERT INTO public.user_activity_log (user_id, activity, resource, resource_id, metadata)
    VALUES (auth.uid(), event, CASE WHEN TG_TABLE_NAME = 'profiles' THEN 'profile'
                                    ELSE 'permission' END::public.resource_type,
            (changed ->> CASE WHEN TG_TABLE_NAME = 'profiles' THEN 'user_id' ELSE 'id' END)::uuid,
            jsonb_build_object('table', TG_TABLE_NAME, 'operation', lower(TG_OP))
                || (changed - 'created_at' - 'updated_at'));
    RETURN NULL;
END
$fn$;
REVOKE EXECUTE ON FUNCTION private.log_privileged_activity()
    FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER profiles_record_role_change AFTER UPDATE OF role ON public.profiles
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role)
    EXECUTE FUNCTION private.log_privileged_activity();
CREATE TRIGGER user_permissions_record_activity AFTER INSERT OR UPDATE OR DELETE
    ON public.user_permissions FOR EACH ROW EXECUTE FUNCTION private.log_privileged_activity();
CREATE TRIGGER role_permissions_record_activity AFTER INSERT OR UPDATE OR DELETE
    ON public.role_permissions FOR EACH ROW EXECUTE FUNCTION private.log_privileged_activity();
"""

DROP_PRIVATE_SCHEMA = r"""
DROP TRIGGER role_permissions_record_activity ON public.role_permissions;
DROP TRIGGER user_permissions_record_activity ON public.user_permissions;
DROP TRIGGER profiles_record_role_change ON public.profiles;
DROP FUNCTION private.log_privileged_activity();
DROP TRIGGER crm_profile_from_auth_user ON auth.users;
DROP FUNCTION private.profile_from_auth_user();
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

# The columns API users may write; everything else is the database's: id, created_at,
# created_by, order_number, granted_by, the tracking columns (version, edit_count,
# updated_at, updated_by, deleted_by), profiles' e-mail (it follows auth.users) and login
# bookkeeping. Soft delete and restore write deleted_at, so only UPDATE includes it.
# (insert columns, update columns)
WRITABLE_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "profiles": ((), ("full_name", "role", "phone", "territory", "is_active", "metadata")),
    "dispensary_profiles": (
        (
            "name", "dba_name", "license_number", "license_status", "license_expires_on",
            "status", "contact_name", "phone", "email", "address_line1", "address_line2",
            "city", "county", "state", "postal_code", "assigned_agent_id", "notes", "metadata",
        ),
        (),
    ),
    "products": (
        (
            "name", "sku", "category", "strain_type", "brand", "description", "thc_percent",
            "cbd_percent", "unit_size", "unit_price", "is_available", "metadata",
        ),
        (),
    ),
    "orders": (
        (
            "dispensary_id", "agent_id", "status", "order_date", "requested_delivery_date",
            "delivered_at", "total_amount", "notes", "metadata",
        ),
        (),
    ),
    "order_items": (("order_id", "product_id", "quantity", "unit_price"), ()),
    "communications": (
        (
            "dispensary_id", "agent_id", "type", "subject", "body", "occurred_at",
            "follow_up_on", "metadata",
        ),
        (),
    ),
    "tasks": (
        (
            "title", "description", "assigned_to", "dispensary_id", "status", "priority",
            "due_date", "completed_at", "metadata",
        ),
        (),
    ),
}  # fmt: skip


def _column_grants() -> str:
    grants = []
    for table, (insert, update) in WRITABLE_COLUMNS.items():
        update = update or insert
        grants.append(f"REVOKE INSERT, UPDATE ON TABLE public.{table} FROM authenticated;")
        if insert:
            grants.append(
                f"GRANT INSERT ({', '.join(insert)}) ON TABLE public.{table} TO authenticated;"
            )
        grants.append(
            f"GRANT UPDATE ({', '.join((*update, 'deleted_at'))}) ON TABLE public.{table} "
            "TO authenticated;"
        )
    return (
        "\n".join(grants)
        + "\nALTER TABLE public.tasks ALTER COLUMN created_by SET DEFAULT auth.uid();\n"
    )


def _undo_column_grants() -> str:
    return (
        "".join(
            f"REVOKE INSERT, UPDATE ON TABLE public.{t} FROM authenticated;\n"
            f"GRANT INSERT, UPDATE ON TABLE public.{t} TO authenticated;\n"
            for t in WRITABLE_COLUMNS
        )
        + "ALTER TABLE public.tasks ALTER COLUMN created_by DROP DEFAULT;\n"
    )


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

# The downgrade gives anon back its EXECUTE on the baseline's role helper where it had it:
# where the default privileges (Supabase's) granted it to anon when the function was made.
# It is safe to give back: the helper returns NULL for anon. The other revocations stay (see
# downgrade()).
RESTORE_ANON_ROLE_HELPER = r"""
DO $restore$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_default_acl AS d, aclexplode(d.defaclacl) AS a
         WHERE d.defaclobjtype = 'f'
           AND d.defaclrole = (SELECT p.proowner FROM pg_catalog.pg_proc AS p
                                WHERE p.oid = 'public.current_user_role()'::regprocedure)
           AND d.defaclnamespace IN (0, 'public'::regnamespace)
           AND a.grantee = 'anon'::regrole AND a.privilege_type = 'EXECUTE'
    ) THEN
        GRANT EXECUTE ON FUNCTION public.current_user_role() TO anon;
    END IF;
END
$restore$;
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
# Not auth.users: it belongs to Supabase Auth, and the migrating role may create a trigger on
# it but not lock it explicitly there; the trigger's brief lock is taken when it is created.
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
    op.execute(_column_grants())
    op.execute(API_PRIVILEGES)
    op.execute(PROFILE_GUARD)
    op.execute(WRITER_STAMPS)
    op.execute(PRIVATE_SCHEMA)
    op.execute(ALEMBIC_VERSION)


def downgrade() -> None:
    # alembic_version, and API_PRIVILEGES' other revocations, stay: giving an API role back
    # TRUNCATE (past RLS and every trigger), a sequence's setval or a write on Alembic's table
    # would reopen a hole, and no API role ever needs them.
    op.execute(LOCK_TABLES)
    op.execute(DROP_PRIVATE_SCHEMA)
    op.execute(
        "DROP TRIGGER tasks_guard_assignee ON public.tasks;\n"
        "DROP FUNCTION public.guard_task_assignee();\n"
        "DROP TRIGGER user_permissions_stamp_granted_by ON public.user_permissions;\n"
        "DROP FUNCTION public.stamp_granted_by();\n"
    )
    op.execute(_undo_column_grants())
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
    op.execute(RESTORE_ANON_ROLE_HELPER)
