"""Phase 3: permission and audit functions; change-, edit- and soft-delete tracking triggers.

Revision ID: 0005_phase3_functions_triggers
Revises: 0004_phase2_indexes_constraints
Create Date: 2026-11-24

Functions (all with a fixed ``search_path`` and schema-qualified names). Every SECURITY
DEFINER one lives in schema ``private``, which PostgREST does not expose and ``anon`` cannot
use; the seed's ``public`` names are SECURITY INVOKER entry points into it (so Supabase's
linter finds no privileged function reachable through ``/rpc``):

- ``user_has_permission(user, permission, resource)``: false for NULL input or an unknown,
  inactive or soft-deleted user; true for admins; otherwise an unexpired override for that
  exact permission decides (a deny beats everything, including ``manage``); then an
  unexpired ``manage`` override (allow grants all; deny takes away the role's ``manage``);
  then the role default, where ``manage`` implies every permission.
- Policy helpers: ``current_user_role()`` (now NULL for inactive or soft-deleted users),
  ``is_admin()``, ``current_user_has_permission(permission, resource)``,
  ``request_is_end_user()``.
- ``log_user_activity(...)``: writes one activity row and returns its id. A signed-in user
  logs only for itself, only the activities a client may report (sign-ins, views,
  exports, reports: role and permission changes are recorded by the database), and, when
  inactive or deleted, only ``login_failed``; oversize metadata or user agents are refused.
  service_role and direct database sessions may log for anyone. The user agent comes from
  PostgREST's ``request.headers``, the address from ``X-Forwarded-For`` counted from the
  right by ``crm.trusted_proxy_hops`` (default 1: the hop the platform's proxy appends;
  docs/access-model.md). A ``login`` also bumps ``profiles.last_login_at`` / ``login_count``.
- ``archive_activity_log_partitions(older_than, drop_archived)``: detaches monthly
  partitions that ended before ``now() - older_than`` and moves them to schema
  ``activity_archive`` (or drops them only when asked).

Triggers on the seven tracked tables:

- ``<table>_track_edit`` (BEFORE UPDATE, per row; ``private.track_<table>_edit()``, which
  ``private.refresh_change_log()`` generates from the table's columns): edit tracking and the
  update's change-log row in one trigger. No session can set ``version``, ``edit_count``,
  ``updated_at``, ``updated_by``, ``deleted_by`` or change ``id``, ``created_at``,
  ``order_number`` or a task's ``created_by``; a real change bumps ``version`` and
  ``edit_count`` and writes one ``change_log`` row with only the changed columns (typed
  comparisons, only those columns turned into jsonb); soft delete (setting ``deleted_at``)
  records who and when; restore (clearing it) is for admins only. It replaces the baseline's
  ``<table>_set_updated_at``, and it fires last of the table's BEFORE UPDATE triggers (name
  order: ``crm-schema verify`` refuses one named after it), so it logs the row that is
  written. A function made for other columns than the table now has hands the diff to the
  generic ``private.log_update_generic()``; the migration tooling regenerates them after each
  run. On insert the bookkeeping columns come from their defaults (``updated_by`` gets
  ``auth.uid()``), which the API users cannot override: they hold no INSERT privilege on
  those columns. A BEFORE INSERT trigger doing the same cost a fifth of the insert path
  (docs/benchmark-notes.md).
- ``profiles_guard_logins`` (BEFORE UPDATE OF the login columns): API users cannot write
  ``last_login_at`` / ``login_count``; ``log_user_activity()`` does, as its owner.
- ``<table>_forbid_hard_delete`` (BEFORE DELETE, per statement): only admins and
  non-API sessions may delete rows; everyone else soft-deletes.
- ``<table>_log_insert`` / ``_log_delete`` (AFTER, per statement, with transition tables):
  one ``change_log`` row per inserted or deleted row, set-based, so a bulk statement costs one
  INSERT ... SELECT.
- Both permission tables get the same change logging; their ``<table>_track_edit`` keeps
  ``updated_at`` the database's (now() on a real change).

Columns that are bookkeeping, not content (``updated_at``, ``updated_by``, ``version``,
``edit_count``, ``last_login_at``, ``login_count``): an update changing only those is not an
edit and writes no change-log row.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_phase3_functions_triggers"
down_revision: str | Sequence[str] | None = "0004_phase2_indexes_constraints"
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
PERMISSION_TABLES = ("role_permissions", "user_permissions")

# The baseline's body of current_user_role(), restored exactly by the downgrade.
BASELINE_CURRENT_USER_ROLE = r"""
CREATE OR REPLACE FUNCTION public.current_user_role() RETURNS public.user_role
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
AS $fn$
    SELECT p.role FROM public.profiles AS p WHERE p.id = auth.uid()
$fn$;
"""

# SECURITY DEFINER code lives in schema private: PostgREST does not expose it, and anon has no
# USAGE on it. authenticated and service_role have USAGE so that the public SECURITY INVOKER
# entry points and the policies can call the helpers granted to them (and nothing else there).
# Created only where missing, with a marker, so the downgrade removes only what this revision
# made.
PRIVATE_SCHEMA = r"""
DO $private$
BEGIN
    IF to_regnamespace('private') IS NULL THEN
        CREATE SCHEMA private;
        COMMENT ON SCHEMA private IS 'crm-schema:0005_phase3_functions_triggers';
        REVOKE ALL ON SCHEMA private FROM PUBLIC;
    END IF;
END
$private$;
GRANT USAGE ON SCHEMA private TO authenticated, service_role;
"""

DROP_PRIVATE_SCHEMA = r"""
DO $private$
BEGIN
    -- No CASCADE: if something else was put in the schema, stop and say so. A schema that
    -- was there before keeps the USAGE granted above: what it had before is not known.
    IF obj_description(to_regnamespace('private'), 'pg_namespace')
       = 'crm-schema:0005_phase3_functions_triggers' THEN
        DROP SCHEMA private;
    END IF;
END
$private$;
"""

# The helpers below are PL/pgSQL, not SQL: a SQL function with a SET clause is never inlined,
# and before PostgreSQL 18 it is parsed and planned again on every call, while PL/pgSQL keeps
# its plans for the session. Policies call them on every request (Supabase runs 15).
HELPERS = r"""
-- A user who is inactive or soft-deleted has no role, and so no staff access. SECURITY
-- DEFINER (it reads profiles past their RLS), so it lives in schema private; the public name
-- the baseline's policies and the apps call is a SECURITY INVOKER entry point into it.
CREATE FUNCTION private.current_user_role() RETURNS public.user_role
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = ''
AS $fn$
BEGIN
    RETURN (SELECT p.role FROM public.profiles AS p
             WHERE p.id = auth.uid() AND p.is_active AND p.deleted_at IS NULL);
END
$fn$;

CREATE OR REPLACE FUNCTION public.current_user_role() RETURNS public.user_role
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = ''
AS $fn$
BEGIN
    RETURN private.current_user_role();
END
$fn$;

CREATE FUNCTION public.is_admin() RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $fn$
BEGIN
    RETURN coalesce(private.current_user_role() = 'admin', false);
END
$fn$;

-- True when the request comes from a Supabase API user (anon or authenticated) rather than
-- service_role, the table owner or another direct database session. current_setting('role')
-- is the role the session switched to, even inside a SECURITY DEFINER function.
-- The early return skips auth.role() for API sessions.
CREATE FUNCTION public.request_is_end_user() RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $fn$
BEGIN
    IF current_setting('role', true) IN ('anon', 'authenticated') THEN
        RETURN true;
    END IF;
    RETURN coalesce(auth.role() IN ('anon', 'authenticated'), false);
END
$fn$;
"""

USER_HAS_PERMISSION = r"""
CREATE FUNCTION private.user_has_permission(
    p_user_id uuid,
    p_permission public.permission_type,
    p_resource public.resource_type
) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = ''
AS $fn$
DECLARE
    user_role public.user_role;
    exact_override boolean;
    manage_override boolean;
BEGIN
    IF p_user_id IS NULL OR p_permission IS NULL OR p_resource IS NULL THEN
        RETURN false;
    END IF;
    -- API users may ask about themselves; asking about others is for permission readers.
    IF public.request_is_end_user() AND p_user_id IS DISTINCT FROM auth.uid()
       AND NOT private.user_has_permission(auth.uid(), 'read', 'permission') THEN
        RAISE EXCEPTION 'permission denied: you may only check your own permissions'
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    SELECT p.role INTO user_role FROM public.profiles AS p
    WHERE p.id = p_user_id AND p.is_active AND p.deleted_at IS NULL;
    IF user_role IS NULL THEN
        RETURN false;  -- unknown, inactive or soft-deleted
    ELSIF user_role = 'admin' THEN
        RETURN true;
    END IF;

    -- bool_and: should several overrides ever apply, a deny wins.
    SELECT bool_and(up.granted) FILTER (WHERE up.permission = p_permission),
           bool_and(up.granted) FILTER (WHERE up.permission = 'manage')
      INTO exact_override, manage_override
      FROM public.user_permissions AS up
     WHERE up.user_id = p_user_id AND up.resource = p_resource
       AND up.permission IN (p_permission, 'manage')
       AND (up.expires_at IS NULL OR up.expires_at > now());

    IF exact_override IS NOT NULL THEN
        RETURN exact_override;
    ELSIF manage_override THEN
        RETURN true;
    END IF;
    RETURN EXISTS (
        SELECT 1 FROM public.role_permissions AS rp
        WHERE rp.role = user_role AND rp.resource = p_resource
          AND (rp.permission = p_permission
               OR (rp.permission = 'manage' AND manage_override IS NULL))
    );
END
$fn$;

-- The seed's public name: a SECURITY INVOKER entry point (callable through the API) into
-- the SECURITY DEFINER implementation, which PostgREST does not expose.
CREATE FUNCTION public.user_has_permission(
    p_user_id uuid,
    p_permission public.permission_type,
    p_resource public.resource_type
) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY INVOKER
    SET search_path = ''
AS $fn$
BEGIN
    RETURN private.user_has_permission(p_user_id, p_permission, p_resource);
END
$fn$;

CREATE FUNCTION public.current_user_has_permission(
    p_permission public.permission_type,
    p_resource public.resource_type
) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $fn$
BEGIN
    RETURN private.user_has_permission(auth.uid(), p_permission, p_resource);
END
$fn$;
"""

LOG_USER_ACTIVITY = r"""
-- The client's address in PostgREST's request headers, by the trusted-proxy rule: every proxy
-- appends the address it accepted the connection from to X-Forwarded-For, and only the
-- entries added by proxies we trust are facts; whatever is left of them the client wrote.
-- crm.trusted_proxy_hops (default 1: the platform's own gateway) says how many there are; the
-- client is the entry that many places from the right. X-Real-IP is the client's to write and
-- is ignored. A missing hop or a malformed value gives NULL rather than a failed log write.
CREATE FUNCTION public.request_client_ip(headers jsonb) RETURNS inet
    LANGUAGE plpgsql STABLE
    SET search_path = ''
AS $fn$
DECLARE
    setting constant text := coalesce(nullif(current_setting('crm.trusted_proxy_hops', true), ''),
                                      '1');
    hops integer;
    entries text[];
    candidate text;
BEGIN
    IF setting !~ '^[0-9]{1,2}$' THEN
        RAISE EXCEPTION 'crm.trusted_proxy_hops must be a whole number from 0 to 99, not %',
            setting USING ERRCODE = 'invalid_parameter_value';
    END IF;
    hops := setting::integer;
    entries := string_to_array(headers ->> 'x-forwarded-for', ',');
    IF hops = 0 OR entries IS NULL OR cardinality(entries) < hops THEN
        RETURN NULL;
    END IF;
    candidate := btrim(entries[cardinality(entries) - hops + 1]);
    IF candidate = '' THEN
        RETURN NULL;
    END IF;
    -- The exception block (a subtransaction) only when there is something to parse.
    BEGIN
        RETURN candidate::inet;
    EXCEPTION WHEN invalid_text_representation THEN
        RETURN NULL;
    END;
END
$fn$;

CREATE FUNCTION private.log_user_activity(
    p_user_id uuid,
    p_activity public.activity_type,
    p_resource public.resource_type,
    p_resource_id uuid,
    p_metadata jsonb
) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = ''
AS $fn$
DECLARE
    -- What an API caller can vouch for itself. Role and permission changes, data changes and
    -- system events are recorded by the database's own triggers, never taken from a caller.
    api_activities constant public.activity_type[] :=
        ARRAY['login', 'logout', 'login_failed', 'view', 'export', 'report_run'];
    -- The bounds of user_activity_log's checks, refused here with a readable message.
    max_metadata_bytes constant integer := 8192;
    max_user_agent_chars constant integer := 512;
    target uuid := p_user_id;
    caller uuid;
    -- Read and parsed once: the IP and the user agent both come from it.
    headers constant jsonb := nullif(current_setting('request.headers', true), '')::jsonb;
    v_metadata constant jsonb := coalesce(p_metadata, '{}'::jsonb);
    v_user_agent constant text := headers ->> 'user-agent';
    signed_in boolean;
    new_id uuid;
BEGIN
    IF p_activity IS NULL THEN
        RAISE EXCEPTION 'activity must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(v_metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object, not %', jsonb_typeof(v_metadata)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(v_metadata::text) > max_metadata_bytes THEN
        RAISE EXCEPTION 'metadata is too large: % bytes, at most % allowed',
            octet_length(v_metadata::text), max_metadata_bytes
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF char_length(v_user_agent) > max_user_agent_chars THEN
        RAISE EXCEPTION 'user agent is too long: % characters, at most % allowed',
            char_length(v_user_agent), max_user_agent_chars
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF current_setting('role', true) IN ('anon', 'authenticated', 'service_role')
       OR coalesce(auth.role() IN ('anon', 'authenticated', 'service_role'), false) THEN
        IF p_activity <> ALL (api_activities) THEN
            RAISE EXCEPTION 'permission denied: % is recorded by the database, not through the '
                            'API', p_activity USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF public.request_is_end_user() THEN
        caller := auth.uid();
        IF caller IS NULL THEN
            RAISE EXCEPTION 'permission denied: sign in to log activity'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        target := coalesce(p_user_id, caller);
        IF target <> caller THEN
            RAISE EXCEPTION 'permission denied: you may only log activity for yourself'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF target IS NOT NULL THEN
        SELECT p.is_active AND p.deleted_at IS NULL INTO signed_in
          FROM public.profiles AS p WHERE p.id = target;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no user with id %', target USING ERRCODE = 'foreign_key_violation';
        END IF;
        -- A deactivated or deleted user can still hold a valid token: all it may leave in the
        -- log is that it tried to sign in.
        IF NOT signed_in AND p_activity <> 'login_failed' THEN
            RAISE EXCEPTION 'permission denied: an inactive or deleted user may only log '
                            'login_failed' USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;

    INSERT INTO public.user_activity_log
        (user_id, activity, resource, resource_id, metadata, ip_address, user_agent)
    VALUES (
        target, p_activity, p_resource, p_resource_id, v_metadata,
        CASE WHEN headers IS NOT NULL THEN public.request_client_ip(headers) END,
        v_user_agent
    )
    RETURNING id INTO new_id;

    IF p_activity = 'login' AND target IS NOT NULL THEN
        UPDATE public.profiles
           SET last_login_at = now(), login_count = login_count + 1
         WHERE id = target;
    END IF;
    RETURN new_id;
END
$fn$;

-- The seed's public name, a SECURITY INVOKER entry point into the implementation above.
CREATE FUNCTION public.log_user_activity(
    p_user_id uuid,
    p_activity public.activity_type,
    p_resource public.resource_type,
    p_resource_id uuid,
    p_metadata jsonb
) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    SET search_path = ''
AS $fn$
BEGIN
    RETURN private.log_user_activity(p_user_id, p_activity, p_resource, p_resource_id,
                                     p_metadata);
END
$fn$;
"""

ARCHIVE_FUNCTION = r"""
CREATE SCHEMA activity_archive;
COMMENT ON SCHEMA activity_archive IS
    'Activity-log months detached by public.archive_activity_log_partitions(); not exposed '
    'to the API.';

CREATE FUNCTION public.archive_activity_log_partitions(
    older_than interval DEFAULT interval '90 days',
    drop_archived boolean DEFAULT false
) RETURNS TABLE (partition_name text, action text, row_count bigint)
    LANGUAGE plpgsql
    SET search_path = ''
AS $fn$
DECLARE
    cutoff timestamptz;
    part record;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must be a positive interval, not %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cutoff := now() - older_than;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('public.user_activity_log'));
    FOR part IN
        SELECT c.relname,
               -- the partition's upper bound, read back from its bound expression
               (regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                             'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
          FROM pg_catalog.pg_inherits AS i
          JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'public.user_activity_log'::regclass
           AND c.relname ~ '^user_activity_log_[0-9]{4}_[0-9]{2}$'
         ORDER BY 1
    LOOP
        CONTINUE WHEN part.upper_bound > cutoff;
        partition_name := part.relname;
        EXECUTE format('SELECT count(*) FROM public.%I', part.relname) INTO row_count;
        EXECUTE format('ALTER TABLE public.user_activity_log DETACH PARTITION public.%I',
                       part.relname);
        IF drop_archived THEN
            EXECUTE format('DROP TABLE public.%I', part.relname);
            action := 'dropped';
        ELSE
            EXECUTE format('ALTER TABLE public.%I SET SCHEMA activity_archive', part.relname);
            action := 'archived';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION public.archive_activity_log_partitions(interval, boolean) IS
    'Detach activity-log months that ended before now() - older_than (default 90 days) and '
    'move them to schema activity_archive, or drop them when drop_archived is true. The '
    'catch-all partition is never touched.';
"""

TRACK_EDIT = r"""
-- API users cannot write profiles' login columns (the change would leave no trace in the
-- change log): log_user_activity() does, running as its owner. SECURITY INVOKER, so that
-- current_user is the role writing; the trigger fires only when the UPDATE names them.
CREATE FUNCTION public.guard_login_columns() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $fn$
BEGIN
    IF current_user IN ('anon', 'authenticated') THEN
        NEW.last_login_at := OLD.last_login_at;
        NEW.login_count := OLD.login_count;
    END IF;
    RETURN NEW;
END
$fn$;

CREATE FUNCTION public.forbid_hard_delete() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $fn$
BEGIN
    IF public.request_is_end_user() AND NOT public.is_admin() THEN
        RAISE EXCEPTION 'permission denied: only an admin can delete from %; set deleted_at '
                        'to soft-delete instead', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$fn$;

-- SECURITY DEFINER: the API roles may not write change_log themselves. Inserts and deletes,
-- set-based over the statement's transition table: a bulk statement costs one INSERT ... SELECT.
-- The actor is auth.uid(), never a column of the row: on insert nothing has checked the row's
-- updated_by (a session allowed to name it could send anyone's).
CREATE FUNCTION private.log_changes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = ''
AS $fn$
DECLARE
    actor uuid;
BEGIN
    actor := auth.uid();  -- once a statement: in the SELECT it would be once a row
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.change_log
            (table_name, record_id, operation, new_values, changed_by)
        SELECT TG_TABLE_NAME, n.id, 'insert', to_jsonb(n), actor FROM new_rows AS n;
    ELSE
        INSERT INTO public.change_log
            (table_name, record_id, operation, old_values, changed_by)
        SELECT TG_TABLE_NAME, o.id, 'delete', to_jsonb(o), actor FROM old_rows AS o;
    END IF;
    RETURN NULL;
END
$fn$;

-- Updates: any shape of row, by walking its jsonb. The generated per-table functions below
-- fall back to it whenever the table no longer has exactly the columns they were made for.
-- Returns whether the update changed anything but bookkeeping (and so was logged).
CREATE FUNCTION private.log_update_generic(relation text, old_row jsonb, new_row jsonb,
                                           actor uuid)
    RETURNS boolean
    LANGUAGE sql
    SET search_path = ''
AS $fn$
    WITH logged AS (
        INSERT INTO public.change_log
            (table_name, record_id, operation, old_values, new_values, changed_columns,
             changed_by)
        SELECT relation, (new_row ->> 'id')::uuid,
               CASE
                   WHEN old_row ->> 'deleted_at' IS NULL
                        AND new_row ->> 'deleted_at' IS NOT NULL THEN 'soft_delete'
                   WHEN old_row ->> 'deleted_at' IS NOT NULL
                        AND new_row ->> 'deleted_at' IS NULL THEN 'restore'
                   ELSE 'update'
               END::public.change_operation,
               d.old_values, d.new_values, d.changed, actor
          FROM (SELECT array_agg(e.key ORDER BY e.key COLLATE "C") AS changed,
                       jsonb_object_agg(e.key, old_row -> e.key) AS old_values,
                       jsonb_object_agg(e.key, e.value) AS new_values
                  FROM jsonb_each(new_row) AS e
                 WHERE e.value IS DISTINCT FROM old_row -> e.key
                   AND e.key <> ALL (ARRAY['updated_at', 'updated_by', 'version', 'edit_count',
                                           'last_login_at', 'login_count'])) AS d
         WHERE d.changed IS NOT NULL
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM logged)
$fn$;

-- Writes (or rewrites) private.track_<table>_edit(), the one BEFORE UPDATE row trigger that
-- does a table's edit tracking and logs its updates (docs/benchmark-notes.md: one trigger
-- call a row instead of two, and no after-trigger queue). It fires last among the table's
-- BEFORE UPDATE row triggers (triggers fire in name order; verify refuses one sorting after
-- it), so the row it logs is the row written; if a constraint or a policy then refuses the
-- row, the statement fails and the log row goes with it. The diff is one typed comparison
-- per column, and only the changed columns are turned into jsonb, a fraction of the cost of
-- turning both rows into jsonb and walking them. A function made for other columns than the
-- table has now never breaks a write or misses a change: a column added since (an attnum
-- past the ones it knew) or a column it names that is gone (dropped, renamed: the error is
-- caught) sends the row to log_update_generic(). Migrations run through crm-schema or
-- alembic call this again after each transaction, so the fast path follows the table; it
-- skips a table whose function is already current. Returns how many it wrote.
CREATE FUNCTION private.refresh_change_log(target regclass DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = ''
AS $gen$
DECLARE
    rel record;
    last_attnum integer;
    columns text[];
    tracked boolean;
    stamped boolean;
    signature text;
    func text;
    checks text;
    before_diff text;
    after_diff text;
    unchanged text;
    written integer := 0;
BEGIN
    FOR rel IN
        SELECT c.oid, c.relname::text AS name FROM pg_catalog.pg_class AS c
         WHERE c.relnamespace = 'public'::regnamespace
           AND (c.oid = target
                OR target IS NULL AND EXISTS (
                    SELECT 1 FROM pg_catalog.pg_trigger AS t
                     WHERE t.tgrelid = c.oid AND t.tgname = c.relname || '_track_edit'))
    LOOP
        SELECT max(a.attnum),
               array_agg(a.attname::text ORDER BY a.attname COLLATE "C")
                   FILTER (WHERE NOT a.attisdropped AND a.attname <> ALL (ARRAY[
                       'updated_at', 'updated_by', 'version', 'edit_count',
                       'last_login_at', 'login_count'])),
               coalesce(bool_or(a.attname = 'version' AND NOT a.attisdropped), false),
               coalesce(bool_or(a.attname = 'updated_at' AND NOT a.attisdropped), false)
          INTO last_attnum, columns, tracked, stamped
          FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = rel.oid AND a.attnum > 0;
        IF tracked THEN
            -- The identity checks below refuse any change to these, so comparing them again
            -- in the diff would be dead work. (tasks.created_by stays: it may become NULL.)
            columns := ARRAY(SELECT u.col FROM unnest(columns) WITH ORDINALITY AS u (col, n)
                              WHERE u.col <> ALL (CASE rel.name WHEN 'orders'
                                                   THEN ARRAY['id', 'created_at', 'order_number']
                                                   ELSE ARRAY['id', 'created_at'] END)
                              ORDER BY u.n);
        END IF;
        func := format('private.%I', 'track_' || rel.name || '_edit');
        signature := format('Edit tracking and change log for updates of public.%s; generated '
                            'by private.refresh_change_log() for attnums up to %s: %s',
                            rel.name, last_attnum, array_to_string(columns, ', '));
        IF pg_catalog.obj_description(pg_catalog.to_regprocedure(func || '()'), 'pg_proc')
           IS NOT DISTINCT FROM signature THEN
            CONTINUE;
        END IF;
        SELECT string_agg(format($check$
            IF NEW.%1$I IS DISTINCT FROM OLD.%1$I THEN
                changed := changed || %2$L::text;
                old_values := old_values || pg_catalog.jsonb_build_object(%2$L, OLD.%1$I);
                new_values := new_values || pg_catalog.jsonb_build_object(%2$L, NEW.%1$I);
            END IF;$check$, col, col), '')
          INTO checks FROM unnest(columns) AS col;
        IF tracked THEN
            -- Each statement below is an expression PL/pgSQL prepares again in every
            -- transaction, so the common path (a live row, a real change) runs as few as it
            -- can: one test for the identity columns, one for the deletion columns, and the
            -- bookkeeping reset only where nothing else overwrites it (docs/benchmark-notes.md).
            before_diff := format($track$
    -- Identity is the database's: no session rewrites it. (tasks.created_by may only become
    -- NULL: its foreign key does that when the creator's profile is removed.)
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.created_at IS DISTINCT FROM OLD.created_at%s THEN
        IF NEW.id IS DISTINCT FROM OLD.id OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
            RAISE EXCEPTION '%%.id and %%.created_at cannot be changed', TG_TABLE_NAME,
                TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
        END IF;%s
    END IF;$track$,
                CASE rel.name
                    WHEN 'orders' THEN $orders$
       OR NEW.order_number IS DISTINCT FROM OLD.order_number$orders$
                    WHEN 'tasks' THEN $tasks$
       OR NEW.created_by IS DISTINCT FROM OLD.created_by AND NEW.created_by IS NOT NULL$tasks$
                    ELSE '' END,
                -- (Reached only when the table's own identity column changed.)
                CASE rel.name
                    WHEN 'orders' THEN $orders$
        RAISE EXCEPTION 'orders.order_number cannot be changed'
            USING ERRCODE = 'integrity_constraint_violation';$orders$
                    WHEN 'tasks' THEN $tasks$
        RAISE EXCEPTION 'tasks.created_by cannot be changed'
            USING ERRCODE = 'integrity_constraint_violation';$tasks$
                    ELSE '' END)
            || $track$
    -- Deletion is the database's too: deleted_by is never the client's, and a deletion's
    -- time is not editable. A live row left live skips all of it.
    IF NEW.deleted_at IS NOT NULL OR OLD.deleted_at IS NOT NULL
       OR NEW.deleted_by IS DISTINCT FROM OLD.deleted_by THEN
        NEW.deleted_by := OLD.deleted_by;
        IF OLD.deleted_at IS NULL THEN
            IF NEW.deleted_at IS NOT NULL THEN
                NEW.deleted_at := pg_catalog.now();  -- soft delete: record when and who
                NEW.deleted_by := auth.uid();
                operation := 'soft_delete';
            END IF;
        ELSIF NEW.deleted_at IS NULL THEN
            -- (SECURITY DEFINER changes current_user, not the role the session switched to,
            -- which is what request_is_end_user() reads.)
            IF public.request_is_end_user() AND NOT public.is_admin() THEN
                RAISE EXCEPTION 'permission denied: only an admin can restore a deleted %',
                    TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
            END IF;
            NEW.deleted_by := NULL;               -- restore
            operation := 'restore';
        ELSE
            NEW.deleted_at := OLD.deleted_at;
        END IF;
    END IF;$track$;
            -- Bookkeeping is the database's: whatever the client sent is replaced, by the
            -- bump after a real change or by the old values when there is none.
            unchanged := $track$
        NEW.version := OLD.version;
        NEW.edit_count := OLD.edit_count;
        NEW.updated_at := OLD.updated_at;
        NEW.updated_by := OLD.updated_by;$track$;
            after_diff := $track$
    NEW.version := OLD.version + 1;
    NEW.edit_count := OLD.edit_count + 1;
    NEW.updated_at := pg_catalog.now();
    NEW.updated_by := actor;$track$;
        ELSIF stamped THEN
            before_diff := '';
            unchanged := $stamp$
        NEW.updated_at := OLD.updated_at;$stamp$;
            after_diff := $stamp$
    NEW.updated_at := pg_catalog.now();$stamp$;
        ELSE
            before_diff := '';
            unchanged := '';
            after_diff := '';
        END IF;
        EXECUTE format($create$
CREATE OR REPLACE FUNCTION %1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = ''
AS $fn$
DECLARE
    changed text[] := '{}';
    old_values jsonb := '{}';
    new_values jsonb := '{}';
    operation public.change_operation := 'update';
    actor uuid;
BEGIN%4$s
    IF pg_catalog.has_column_privilege(TG_RELID, %2$s::smallint, 'SELECT') IS NULL THEN
        BEGIN%3$s
        EXCEPTION WHEN OTHERS THEN
            changed := NULL;
        END;
    ELSE
        changed := NULL;
    END IF;
    IF changed = '{}' THEN  -- nothing but bookkeeping: not an edit%6$s
        RETURN NEW;
    END IF;
    actor := auth.uid();  -- only now: it is a function call per row
    IF changed IS NULL THEN
        IF NOT private.log_update_generic(TG_TABLE_NAME, pg_catalog.to_jsonb(OLD),
                                          pg_catalog.to_jsonb(NEW), actor) THEN%6$s
            RETURN NEW;
        END IF;
    ELSE
        INSERT INTO public.change_log
            (table_name, record_id, operation, old_values, new_values, changed_columns,
             changed_by)
        VALUES (TG_TABLE_NAME, NEW.id, operation, old_values, new_values, changed, actor);
    END IF;%5$s
    RETURN NEW;
END
$fn$$create$,
            func, last_attnum + 1, checks, before_diff, after_diff, unchanged);
        EXECUTE format('COMMENT ON FUNCTION %s() IS %L', func, signature);
        -- (Supabase's default privileges grant new functions to the API roles.)
        EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC, anon, authenticated, '
                       'service_role', func);
        written := written + 1;
    END LOOP;
    RETURN written;
END
$gen$;
"""

FUNCTION_SIGNATURES = (
    "private.log_changes()",
    "private.log_update_generic(text, jsonb, jsonb, uuid)",
    "private.refresh_change_log(regclass)",
    "public.forbid_hard_delete()",
    "public.guard_login_columns()",
    "public.archive_activity_log_partitions(interval, boolean)",
    "public.log_user_activity(uuid, public.activity_type, public.resource_type, uuid, jsonb)",
    "public.request_client_ip(jsonb)",
    "public.current_user_has_permission(public.permission_type, public.resource_type)",
    "public.user_has_permission(uuid, public.permission_type, public.resource_type)",
    "public.request_is_end_user()",
    "public.is_admin()",
    "private.log_user_activity(uuid, public.activity_type, public.resource_type, uuid, jsonb)",
    "private.user_has_permission(uuid, public.permission_type, public.resource_type)",
    "private.current_user_role()",
)

# Functions are executable by PUBLIC by default (and Supabase grants anon and authenticated
# on new functions): take that back, then grant what each caller needs.
GRANTS = """
REVOKE EXECUTE ON FUNCTION {all} FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.is_admin(), public.request_is_end_user(),
    public.user_has_permission(uuid, public.permission_type, public.resource_type),
    public.current_user_has_permission(public.permission_type, public.resource_type),
    public.log_user_activity(uuid, public.activity_type, public.resource_type, uuid, jsonb),
    private.current_user_role(),
    private.user_has_permission(uuid, public.permission_type, public.resource_type),
    private.log_user_activity(uuid, public.activity_type, public.resource_type, uuid, jsonb)
    TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.request_client_ip(jsonb) TO service_role;
"""


def _log_triggers(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_log_insert AFTER INSERT ON public.{table}\n"
        f"    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT\n"
        f"    EXECUTE FUNCTION private.log_changes();\n"
        f"CREATE TRIGGER {table}_track_edit BEFORE UPDATE ON public.{table}\n"
        f"    FOR EACH ROW EXECUTE FUNCTION private.track_{table}_edit();\n"
        f"CREATE TRIGGER {table}_log_delete AFTER DELETE ON public.{table}\n"
        f"    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT\n"
        f"    EXECUTE FUNCTION private.log_changes();\n"
    )


def _tracked_triggers(table: str) -> str:
    return (
        f"DROP TRIGGER {table}_set_updated_at ON public.{table};\n"
        f"ALTER TABLE public.{table} ALTER COLUMN updated_by SET DEFAULT auth.uid();\n"
        f"CREATE TRIGGER {table}_forbid_hard_delete BEFORE DELETE ON public.{table}\n"
        "    FOR EACH STATEMENT EXECUTE FUNCTION public.forbid_hard_delete();\n"
        + _log_triggers(table)
    )


# Sorts before profiles_track_edit, so edit tracking sees the columns as they will be written.
LOGIN_GUARD = """
CREATE TRIGGER profiles_guard_logins BEFORE UPDATE OF last_login_at, login_count
    ON public.profiles FOR EACH ROW EXECUTE FUNCTION public.guard_login_columns();
"""


# Every lock this revision needs, taken in one statement in the application's order (see 0003),
# retries the transaction with a short lock_timeout until it has them all. The downgrade also
# re-attaches archived months to the activity log.
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
)
LOCK_TABLES = "LOCK TABLE " + ", ".join(f"public.{t}" for t in LOCKED) + " IN ACCESS EXCLUSIVE MODE"
LOCK_TABLES_DOWN = LOCK_TABLES.replace(" IN ACCESS", ", public.user_activity_log IN ACCESS")


def upgrade() -> None:
    # Functions lock no table: made first, so the tables' locks are held only for the
    # triggers. (current_user_role() is replaced in place; the baseline's policies keep
    # calling it.)
    op.execute(PRIVATE_SCHEMA)
    op.execute(HELPERS)
    op.execute(USER_HAS_PERMISSION)
    op.execute(LOG_USER_ACTIVITY)
    op.execute(ARCHIVE_FUNCTION)
    op.execute(TRACK_EDIT)
    op.execute(GRANTS.format(all=", ".join(FUNCTION_SIGNATURES)))
    op.execute(
        "".join(
            f"SELECT private.refresh_change_log('public.{t}');\n"
            for t in (*TRACKED, *PERMISSION_TABLES)
        )
    )
    op.execute(LOCK_TABLES)
    op.execute("".join(_tracked_triggers(t) for t in TRACKED) + LOGIN_GUARD)
    op.execute("".join(_log_triggers(t) for t in PERMISSION_TABLES))


def _drop_triggers(table: str, names: Sequence[str]) -> str:
    return "".join(f"DROP TRIGGER {table}_{name} ON public.{table};\n" for name in names)


def downgrade() -> None:
    logs = ("log_insert", "track_edit", "log_delete")
    op.execute(LOCK_TABLES_DOWN)
    op.execute(
        "DROP TRIGGER profiles_guard_logins ON public.profiles;\n"
        + "".join(_drop_triggers(t, logs) for t in PERMISSION_TABLES)
        + "".join(
            _drop_triggers(t, ("forbid_hard_delete", *logs))
            + f"ALTER TABLE public.{t} ALTER COLUMN updated_by DROP DEFAULT;\n"
            + f"CREATE TRIGGER {t}_set_updated_at BEFORE UPDATE ON public.{t} "
            "FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();\n"
            for t in TRACKED
        )
    )
    # Archived months go back into the log: the downgrade loses no activity row.
    op.execute(
        r"""
DO $restore$
DECLARE
    archived record;
    bounds text[];
BEGIN
    FOR archived IN
        SELECT c.relname FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = 'activity_archive'::regnamespace AND c.relkind = 'r'
    LOOP
        bounds := regexp_match(archived.relname, '^user_activity_log_([0-9]{4})_([0-9]{2})$');
        IF bounds IS NULL THEN
            RAISE EXCEPTION 'activity_archive.% is not an archived month; move it out of '
                            'the schema before downgrading', archived.relname;
        END IF;
        EXECUTE format('ALTER TABLE activity_archive.%I SET SCHEMA public', archived.relname);
        EXECUTE format('ALTER TABLE public.user_activity_log ATTACH PARTITION public.%I '
                       'FOR VALUES FROM (%L) TO (%L)', archived.relname,
                       make_timestamptz(bounds[1]::int, bounds[2]::int, 1, 0, 0, 0, 'UTC'),
                       make_timestamptz(bounds[1]::int, bounds[2]::int, 1, 0, 0, 0, 'UTC')
                           + interval '1 month');
    END LOOP;
END
$restore$;
DROP SCHEMA activity_archive;
"""
    )
    op.execute(BASELINE_CURRENT_USER_ROLE)
    op.execute("".join(f"DROP FUNCTION {sig};\n" for sig in FUNCTION_SIGNATURES))
    op.execute(
        "".join(
            f"DROP FUNCTION private.track_{t}_edit();\n" for t in (*TRACKED, *PERMISSION_TABLES)
        )
    )
    op.execute(DROP_PRIVATE_SCHEMA)
