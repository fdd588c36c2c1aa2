"""Put a tracked record back to an earlier version from its change log.

Revision ID: 0009_record_revert
Revises: 0008_migration_log
Create Date: 2026-12-01

``public.revert_record(table_name, record_id, change_id)`` gives a row of one of the seven
tracked tables the values it had just before change ``change_id``: for every column that
change or a later one touched, the old value from the earliest of them. It is one ordinary
``UPDATE``, so the edit-tracking trigger bumps ``version`` and the change-log trigger records
the revert like any other edit. Bookkeeping columns stay the database's (``version``,
``edit_count``, ``updated_*``, ``deleted_by``, the login counters); ``deleted_at`` follows the
soft-delete rules (reverting a soft delete is a restore, for admins only).

SECURITY INVOKER on purpose: the caller's own Row Level Security decides which change-log rows
it may read and which row it may update, so the function cannot reach further than the caller.
It refuses a record hard-deleted since, a column dropped since, and old values that would break
a constraint today, each with an error naming what is in the way.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_record_revert"
down_revision: str | Sequence[str] | None = "0008_migration_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "public.revert_record(text, uuid, bigint)"

REVERT_RECORD = r"""
CREATE FUNCTION public.revert_record(table_name text, record_id uuid, change_id bigint)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = ''
AS $fn$
DECLARE
    -- The seven tracked tables and the resource whose permissions guard each of them.
    target_resource constant public.resource_type := CASE revert_record.table_name
        WHEN 'profiles' THEN 'profile'
        WHEN 'dispensary_profiles' THEN 'dispensary'
        WHEN 'products' THEN 'product'
        WHEN 'orders' THEN 'order'
        WHEN 'order_items' THEN 'order'
        WHEN 'communications' THEN 'communication'
        WHEN 'tasks' THEN 'task'
    END;
    target_change public.change_log%ROWTYPE;
    later public.change_log%ROWTYPE;
    old_state jsonb := '{}'::jsonb;
    dropped text;
    assignments text;
    sources text;
    new_version integer;
    failed_state text;
    failed_message text;
    failed_constraint text;
BEGIN
    IF target_resource IS NULL THEN
        RAISE EXCEPTION 'revert_record: % is not a tracked table (profiles, dispensary_profiles, '
                        'products, orders, order_items, communications, tasks)',
                        coalesce(revert_record.table_name, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF revert_record.record_id IS NULL OR revert_record.change_id IS NULL THEN
        RAISE EXCEPTION 'revert_record: record_id and change_id must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF public.request_is_end_user() AND NOT (
        public.is_admin()
        OR (public.current_user_has_permission('update', target_resource)
            AND public.current_user_has_permission('read', 'change_log'))
    ) THEN
        RAISE EXCEPTION 'permission denied: reverting % needs update on % and read on change_log',
                        revert_record.table_name, target_resource
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    SELECT * INTO target_change FROM public.change_log AS c WHERE c.id = revert_record.change_id;
    IF NOT FOUND OR target_change.table_name <> revert_record.table_name
       OR target_change.record_id <> revert_record.record_id THEN
        RAISE EXCEPTION 'revert_record: change % is not a change of %.%',
                        revert_record.change_id, revert_record.table_name, revert_record.record_id
            USING ERRCODE = 'no_data_found';
    END IF;
    IF target_change.operation = 'insert' THEN
        RAISE EXCEPTION 'revert_record: change % created %.%; there is no earlier version '
                        '(soft-delete the record instead)',
                        revert_record.change_id, revert_record.table_name, revert_record.record_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Walk back from the newest change to the given one: the earliest change that touched a
    -- column holds its value from before the given change.
    FOR later IN
        SELECT * FROM public.change_log AS c
         WHERE c.table_name = revert_record.table_name
           AND c.record_id = revert_record.record_id
           AND c.id >= revert_record.change_id
         ORDER BY c.id DESC
    LOOP
        IF later.operation = 'delete' THEN
            RAISE EXCEPTION 'revert_record: %.% has since been hard-deleted (change %)',
                            revert_record.table_name, revert_record.record_id, later.id
                USING ERRCODE = 'no_data_found';
        END IF;
        old_state := old_state || coalesce(later.old_values, '{}'::jsonb);
    END LOOP;
    old_state := old_state - ARRAY['id', 'version', 'edit_count', 'updated_at', 'updated_by',
                                   'deleted_by', 'last_login_at', 'login_count'];
    IF old_state = '{}'::jsonb THEN
        RAISE EXCEPTION 'revert_record: change % left nothing to put back', revert_record.change_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT string_agg(k.key, ', ' ORDER BY k.key) INTO dropped
      FROM pg_catalog.jsonb_object_keys(old_state) AS k (key)
     WHERE NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_attribute AS a
         WHERE a.attrelid = pg_catalog.to_regclass('public.' || revert_record.table_name)
           AND a.attname = k.key AND a.attnum > 0 AND NOT a.attisdropped);
    IF dropped IS NOT NULL THEN
        RAISE EXCEPTION 'revert_record: cannot revert %.% to before change %: column(s) % '
                        'have since been dropped',
                        revert_record.table_name, revert_record.record_id,
                        revert_record.change_id, dropped
            USING ERRCODE = 'undefined_column';
    END IF;

    SELECT string_agg(pg_catalog.format('%I', k.key), ', ' ORDER BY k.key),
           string_agg(pg_catalog.format('r.%I', k.key), ', ' ORDER BY k.key)
      INTO assignments, sources
      FROM pg_catalog.jsonb_object_keys(old_state) AS k (key);
    BEGIN
        EXECUTE pg_catalog.format(
            'UPDATE public.%1$I AS t SET (%2$s) = (SELECT %3$s FROM '
            'pg_catalog.jsonb_populate_record(NULL::public.%1$I, $1) AS r) '
            'WHERE t.id = $2 RETURNING t.version',
            revert_record.table_name, assignments, sources)
            INTO new_version USING old_state, revert_record.record_id;
    EXCEPTION WHEN integrity_constraint_violation THEN
        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE,
                                failed_message = MESSAGE_TEXT,
                                failed_constraint = CONSTRAINT_NAME;
        RAISE EXCEPTION 'revert_record: cannot revert %.% to before change %: the old values '
                        'would break %: %',
                        revert_record.table_name, revert_record.record_id,
                        revert_record.change_id,
                        coalesce(nullif(failed_constraint, ''), 'a constraint'), failed_message
            USING ERRCODE = failed_state;
    END;
    IF new_version IS NULL THEN
        RAISE EXCEPTION 'revert_record: %.% does not exist or is not yours to update',
                        revert_record.table_name, revert_record.record_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN new_version;
END
$fn$;
REVOKE EXECUTE ON FUNCTION public.revert_record(text, uuid, bigint) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.revert_record(text, uuid, bigint) TO authenticated, service_role;
COMMENT ON FUNCTION public.revert_record(text, uuid, bigint) IS
    'Put a tracked record back to its state just before change change_id (one audited '
    'UPDATE, under the caller''s own RLS); returns the record''s new version.';
"""


def upgrade() -> None:
    op.execute(REVERT_RECORD)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE};")
