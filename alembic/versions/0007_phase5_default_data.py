"""Phase 5: default role permissions and utility views.

Revision ID: 0007_phase5_default_data
Revises: 0006_phase4_security_policies
Create Date: 2026-11-24

Default role permissions (what each role may do before any per-user override):

- ``admin``: ``manage`` on every resource (admins pass every check anyway; the rows make
  that visible in ``user_effective_permissions``).
- ``manager``: ``read`` on every resource but ``change_log`` (it holds deleted content:
  admins and granted auditors only), ``export`` on reports and CRM data, and the baseline's
  ``create`` / ``update`` on dispensaries, orders, communications and tasks and ``delete``
  (soft) on the communications and tasks it owns.
- ``agent``: what the baseline let an agent do: ``read`` / ``create`` / ``update`` on
  dispensaries, orders, communications and tasks (the policies limit these to the agent's
  own dispensaries and the rows hanging off them), ``delete`` (soft) on its communications
  and tasks, and ``read`` on products and the staff list.

Each default row gets an id derived from its (role, permission, resource), so inserting is
idempotent and the downgrade deletes exactly these rows: a row an administrator added
later, even for the same triple after removing the default, has another id and stays.
Both are logged in ``change_log`` like any other permission change.

Views, all ``security_invoker`` so the caller's own Row Level Security applies:

- ``active_profiles``: users who can sign in (active, not deleted).
- ``user_effective_permissions``: for each user, permission and resource, whether
  ``user_has_permission`` allows it and why (admin, override, manage override, role
  default, role manage, none, inactive), with the override's expiry. Users see their own
  rows; permission readers and direct database sessions see everyone's.
- ``recent_activity``: the last 30 days of the activity log with the user's name.
- ``dispensary_summary``: per live dispensary, its agent, order count, revenue (cancelled
  orders excluded), last order, last contact, open tasks and last logged activity.
- ``record_change_history``: the change log with the acting user's e-mail, for a record's
  history (``WHERE table_name = ... AND record_id = ... ORDER BY changed_at DESC``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_phase5_default_data"
down_revision: str | Sequence[str] | None = "0006_phase4_security_policies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALL_RESOURCES = (
    "profile",
    "dispensary",
    "product",
    "order",
    "communication",
    "task",
    "permission",
    "activity_log",
    "change_log",
    "report",
    "system",
)
CRM_RESOURCES = ("dispensary", "order", "communication", "task")

DEFAULTS: tuple[tuple[str, str, str], ...] = (
    *(("admin", "manage", r) for r in ALL_RESOURCES),
    # Not change_log: it holds the content of soft-deleted rows, which is for admins and for
    # auditors granted read on change_log in user_permissions.
    *(("manager", "read", r) for r in ALL_RESOURCES if r != "change_log"),
    *(("manager", "export", r) for r in ("report", *CRM_RESOURCES)),
    *(("manager", p, r) for p in ("create", "update") for r in CRM_RESOURCES),
    # The baseline let a manager delete the communications and tasks it owns.
    *(("manager", "delete", r) for r in ("communication", "task")),
    *(("agent", p, r) for p in ("read", "create", "update") for r in CRM_RESOURCES),
    *(("agent", "delete", r) for r in ("communication", "task")),
    *(("agent", "read", r) for r in ("product", "profile")),
)

DEFAULT_ID = "md5('crm-schema:0007:' || d.role || ':' || d.permission || ':' || d.resource)::uuid"


def _defaults_values() -> str:
    return ",\n    ".join(f"('{role}', '{perm}', '{res}')" for role, perm, res in DEFAULTS)


VIEWS = r"""
CREATE VIEW public.active_profiles WITH (security_invoker = true) AS
SELECT p.id, p.email, p.full_name, p.role, p.phone, p.territory,
       p.last_login_at, p.login_count, p.created_at
  FROM public.profiles AS p
 WHERE p.deleted_at IS NULL AND p.is_active;
COMMENT ON VIEW public.active_profiles IS 'Users who can sign in: active and not deleted.';

CREATE VIEW public.user_effective_permissions WITH (security_invoker = true) AS
SELECT p.id AS user_id, p.email, p.role, perm.permission, res.resource,
       public.user_has_permission(p.id, perm.permission, res.resource) AS allowed,
       CASE
           WHEN NOT p.is_active OR p.deleted_at IS NOT NULL THEN 'inactive'
           WHEN p.role = 'admin' THEN 'admin'
           WHEN exact.granted IS NOT NULL THEN 'override'
           WHEN manage.granted THEN 'manage override'
           WHEN role_exact.id IS NOT NULL THEN 'role default'
           WHEN role_manage.id IS NOT NULL AND manage.granted IS NULL THEN 'role manage'
           ELSE 'none'
       END AS source,
       exact.expires_at AS override_expires_at
  FROM public.profiles AS p
 CROSS JOIN unnest(enum_range(NULL::public.permission_type)) AS perm(permission)
 CROSS JOIN unnest(enum_range(NULL::public.resource_type)) AS res(resource)
  LEFT JOIN public.user_permissions AS exact
         ON exact.user_id = p.id AND exact.permission = perm.permission
        AND exact.resource = res.resource
        AND (exact.expires_at IS NULL OR exact.expires_at > now())
  LEFT JOIN public.user_permissions AS manage
         ON manage.user_id = p.id AND manage.permission = 'manage'
        AND manage.resource = res.resource AND perm.permission <> 'manage'
        AND (manage.expires_at IS NULL OR manage.expires_at > now())
  LEFT JOIN public.role_permissions AS role_exact
         ON role_exact.role = p.role AND role_exact.permission = perm.permission
        AND role_exact.resource = res.resource
  LEFT JOIN public.role_permissions AS role_manage
         ON role_manage.role = p.role AND role_manage.permission = 'manage'
        AND role_manage.resource = res.resource
 WHERE p.id = (SELECT auth.uid())
    OR (SELECT public.current_user_has_permission('read', 'permission'))
    OR NOT (SELECT public.request_is_end_user());
COMMENT ON VIEW public.user_effective_permissions IS
    'For each user, permission and resource: allowed or not (user_has_permission) and why.';

CREATE VIEW public.recent_activity WITH (security_invoker = true) AS
SELECT a.id, a.created_at, a.user_id, p.email, p.full_name, a.activity, a.resource,
       a.resource_id, a.ip_address, a.user_agent, a.metadata
  FROM public.user_activity_log AS a
  LEFT JOIN public.profiles AS p ON p.id = a.user_id
 WHERE a.created_at >= now() - interval '30 days';
COMMENT ON VIEW public.recent_activity IS 'The last 30 days of the activity log, with names.';

CREATE VIEW public.dispensary_summary WITH (security_invoker = true) AS
SELECT d.id, d.name, d.license_number, d.license_status, d.status, d.city, d.county,
       d.assigned_agent_id, agent.full_name AS agent_name,
       o.order_count, o.revenue, o.last_order_date,
       c.last_contact_at, t.open_tasks, act.last_activity_at
  FROM public.dispensary_profiles AS d
  LEFT JOIN public.profiles AS agent ON agent.id = d.assigned_agent_id
  LEFT JOIN LATERAL (
        SELECT count(*) AS order_count, coalesce(sum(x.total_amount), 0) AS revenue,
               max(x.order_date) AS last_order_date
          FROM public.orders AS x
         WHERE x.dispensary_id = d.id AND x.deleted_at IS NULL AND x.status <> 'cancelled'
       ) AS o ON true
  LEFT JOIN LATERAL (
        SELECT max(x.occurred_at) AS last_contact_at FROM public.communications AS x
         WHERE x.dispensary_id = d.id AND x.deleted_at IS NULL
       ) AS c ON true
  LEFT JOIN LATERAL (
        SELECT count(*) AS open_tasks FROM public.tasks AS x
         WHERE x.dispensary_id = d.id AND x.deleted_at IS NULL
           AND x.status IN ('pending', 'in_progress')
       ) AS t ON true
  LEFT JOIN LATERAL (
        SELECT max(x.created_at) AS last_activity_at FROM public.user_activity_log AS x
         WHERE x.resource = 'dispensary' AND x.resource_id = d.id
       ) AS act ON true
 WHERE d.deleted_at IS NULL;
COMMENT ON VIEW public.dispensary_summary IS
    'Per live dispensary: agent, orders and revenue, last contact, open tasks, last activity.';

CREATE VIEW public.record_change_history WITH (security_invoker = true) AS
SELECT c.id, c.table_name, c.record_id, c.operation, c.changed_columns, c.old_values,
       c.new_values, c.changed_by, p.email AS changed_by_email, c.changed_at, c.transaction_id
  FROM public.change_log AS c
  LEFT JOIN public.profiles AS p ON p.id = c.changed_by;
COMMENT ON VIEW public.record_change_history IS
    'The change log with the acting user''s e-mail; filter by table_name and record_id.';
"""

VIEW_NAMES = (
    "record_change_history",
    "dispensary_summary",
    "recent_activity",
    "user_effective_permissions",
    "active_profiles",
)


# Committed together with 0006 (see its commit_with_next), whose upgrade takes the locks
# first. Downgrading, this revision runs first: it takes every lock 0006's downgrade needs
# too, in the application's order (see 0003), so the pair never waits for a lock while
# holding one that the application needs.
LOCK_DEFAULTS = "LOCK TABLE public.role_permissions IN ACCESS EXCLUSIVE MODE"
LOCK_WITH_0006 = (
    "LOCK TABLE public.tasks, public.communications, public.orders, public.order_items, "
    "public.dispensary_profiles, public.products, public.profiles, public.user_permissions, "
    "public.role_permissions, public.user_activity_log, public.change_log, "
    "public.alembic_version IN ACCESS EXCLUSIVE MODE"
)


def upgrade() -> None:
    op.execute(LOCK_DEFAULTS)
    op.execute(
        "INSERT INTO public.role_permissions (id, role, permission, resource)\n"
        f"SELECT {DEFAULT_ID}, d.role::public.user_role, d.permission::public.permission_type,\n"
        "       d.resource::public.resource_type\n"
        f"  FROM (VALUES\n    {_defaults_values()}\n  ) AS d(role, permission, resource)\n"
        "ON CONFLICT DO NOTHING;"
    )
    op.execute(VIEWS)
    views = ", ".join(f"public.{v}" for v in VIEW_NAMES)
    op.execute(
        # On Supabase, default privileges would let the API roles write to (or truncate) a
        # simple view such as active_profiles: reading is all they need.
        f"REVOKE ALL ON TABLE {views} FROM PUBLIC, anon, authenticated, service_role;\n"
        f"GRANT SELECT ON TABLE {views} TO authenticated, service_role;"
    )


def downgrade() -> None:
    op.execute(LOCK_WITH_0006)
    op.execute("DROP VIEW " + ", ".join(f"public.{v}" for v in VIEW_NAMES) + ";")
    op.execute(
        "DELETE FROM public.role_permissions AS r\n"
        f"USING (VALUES\n    {_defaults_values()}\n) AS d(role, permission, resource)\n"
        f"WHERE r.id = {DEFAULT_ID};"
    )
