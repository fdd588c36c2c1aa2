"""The access model as data: docs/access-model.md is rendered from it (a test keeps the two
equal), the generated access tests and the property-based test check the database against
it, and crm_schema.advisor derives from it what Supabase's advisor reports on purpose.

Rows are named relative to the acting user X (``own`` = X's row at a dispensary assigned to
X; ``at_mine`` = another agent's row at X's dispensary; ``elsewhere`` = another agent's row
at another agent's dispensary; ``assigned`` = a task someone else created and assigned to X;
``self`` / ``other`` = about X / about someone else; ``any`` = every row).
"""

from __future__ import annotations

ACTORS: dict[str, str] = {
    "anon": "not signed in",
    "agent": "an active agent",
    "manager": "an active manager",
    "admin": "an active admin",
    "inactive": "an agent with is_active = false",
    "deleted": "a soft-deleted admin",
    "auditor": "an agent granted read on change_log",
    "expired": "an agent whose read grant on change_log has expired",
    "denied": "an agent with an explicit deny of update on order",
    "delegate": "a manager granted manage on permission",
    "service_role": "the backend's service key (bypasses RLS)",
}
COMMANDS = ("select", "insert", "update", "soft_delete", "restore", "hard_delete")

# The row kinds each relation has (see the module docstring).
ROW_KINDS: dict[str, tuple[str, ...]] = {
    "profiles": ("self", "other"),
    "dispensary_profiles": ("own", "elsewhere"),
    "products": ("any",),
    "orders": ("own", "at_mine", "elsewhere"),
    "order_items": ("own", "at_mine", "elsewhere"),
    "communications": ("own", "at_mine", "elsewhere"),
    "tasks": ("own", "assigned", "elsewhere"),
    "role_permissions": ("own_role", "other_role"),
    "user_permissions": ("self", "other"),
    "user_activity_log": ("self", "other"),
    "change_log": ("any",),
    "migration_log": ("any",),
    "active_profiles": ("self", "other"),
    "user_effective_permissions": ("self", "other"),
    "recent_activity": ("self", "other"),
    "dispensary_summary": ("own", "elsewhere"),
    "record_change_history": ("any",),
}
SOFT_DELETE_TABLES = (
    "profiles",
    "dispensary_profiles",
    "products",
    "orders",
    "order_items",
    "communications",
    "tasks",
)
VIEWS = (
    "active_profiles",
    "user_effective_permissions",
    "recent_activity",
    "dispensary_summary",
    "record_change_history",
)
# Commands that exist for a relation (views and logs are read-only through the API).
WRITE_COMMANDS = ("insert", "update", "hard_delete")


def commands(relation: str) -> tuple[str, ...]:
    if relation in VIEWS:
        return ("select",)
    if relation in SOFT_DELETE_TABLES:
        return COMMANDS
    return ("select", *WRITE_COMMANDS)


Rule = dict[str, tuple[str, ...]]  # command -> row kinds allowed
ALL = "all"


def _everything(relation: str) -> Rule:
    return {c: ROW_KINDS[relation] for c in commands(relation)}


def _nothing(relation: str) -> Rule:
    return {c: () for c in commands(relation)}


def _rule(relation: str, **allowed: tuple[str, ...] | str) -> Rule:
    rule = _nothing(relation)
    for command, kinds in allowed.items():
        assert command in rule, (relation, command)
        rule[command] = ROW_KINDS[relation] if kinds == ALL else tuple(kinds)
    return rule


def _agent() -> dict[str, Rule]:
    return {
        "profiles": _rule("profiles", select=ALL, update=("self",)),
        "dispensary_profiles": _rule(
            "dispensary_profiles", select=("own",), insert=("own",), update=("own",)
        ),
        "products": _rule("products", select=ALL),
        "orders": _rule("orders", select=("own", "at_mine"), insert=("own",), update=("own",)),
        "order_items": _rule(
            "order_items",
            select=("own", "at_mine"),
            insert=("own",),
            update=("own",),
            soft_delete=("own",),
        ),
        "communications": _rule(
            "communications",
            select=("own", "at_mine"),
            insert=("own",),
            update=("own",),
            soft_delete=("own",),
        ),
        "tasks": _rule(
            "tasks",
            select=("own", "assigned"),
            insert=("own",),
            update=("own", "assigned"),
            soft_delete=("own",),
        ),
        "role_permissions": _rule("role_permissions", select=ALL),
        "user_permissions": _rule("user_permissions", select=("self",)),
        "user_activity_log": _rule("user_activity_log", select=("self",)),
        "change_log": _rule("change_log"),
        "migration_log": _rule("migration_log"),
        "active_profiles": _rule("active_profiles", select=ALL),
        "user_effective_permissions": _rule("user_effective_permissions", select=("self",)),
        "recent_activity": _rule("recent_activity", select=("self",)),
        "dispensary_summary": _rule("dispensary_summary", select=("own",)),
        "record_change_history": _rule("record_change_history"),
    }


def _manager() -> dict[str, Rule]:
    crm = {"select": ALL, "insert": ALL, "update": ALL}
    return {
        **_agent(),
        "dispensary_profiles": _rule("dispensary_profiles", **crm),
        "orders": _rule("orders", **crm),
        "order_items": _rule("order_items", **crm, soft_delete=ALL),
        # As in the baseline: a manager removes only its own communications and tasks.
        "communications": _rule("communications", **crm, soft_delete=("own",)),
        "tasks": {
            **_rule("tasks", **crm, soft_delete=("own",)),
            "insert": _API_TASK_INSERTS,
        },
        "user_permissions": _rule("user_permissions", select=ALL),
        "user_activity_log": _rule("user_activity_log", select=ALL),
        "active_profiles": _rule("active_profiles", select=ALL),
        "user_effective_permissions": _rule("user_effective_permissions", select=ALL),
        "recent_activity": _rule("recent_activity", select=ALL),
        "dispensary_summary": _rule("dispensary_summary", select=ALL),
    }


# A task's created_by is the database's (the writer): no API user inserts an "assigned" task.
_API_TASK_INSERTS = ("own", "elsewhere")


def _admin() -> dict[str, Rule]:
    rules = {relation: _everything(relation) for relation in ROW_KINDS}
    for log in ("user_activity_log", "change_log", "migration_log"):
        rules[log] = _rule(log, select=ALL)
    # Profiles come from Supabase Auth's sign-up; nobody may rewrite their own overrides.
    rules["profiles"]["insert"] = ()
    rules["profiles"]["restore"] = ("other",)  # a deleted admin is locked out, as any user
    rules["tasks"]["insert"] = _API_TASK_INSERTS
    rules["user_permissions"] = _rule(
        "user_permissions", select=ALL, insert=("other",), update=("other",), hard_delete=("other",)
    )
    return rules


def _locked_out(*, deleted: bool) -> dict[str, Rule]:
    """No role, so no permission: what is left is what a user may see about itself."""
    rules = {relation: _nothing(relation) for relation in ROW_KINDS}
    rules["role_permissions"] = _rule("role_permissions", select=ALL)
    rules["user_permissions"] = _rule("user_permissions", select=("self",))
    rules["user_activity_log"] = _rule("user_activity_log", select=("self",))
    rules["recent_activity"] = _rule("recent_activity", select=("self",))
    if not deleted:  # a soft-deleted profile is hidden from its own user too
        rules["profiles"] = _rule("profiles", select=("self",))
        rules["user_effective_permissions"] = _rule("user_effective_permissions", select=("self",))
    return rules


def _build() -> dict[str, dict[str, Rule]]:
    agent, manager = _agent(), _manager()
    auditor = {
        **_agent(),
        "change_log": _rule("change_log", select=ALL),
        "record_change_history": _rule("record_change_history", select=ALL),
    }
    denied = {
        **_agent(),
        "orders": _rule("orders", select=("own", "at_mine"), insert=("own",)),
        "order_items": _rule("order_items", select=("own", "at_mine")),
    }
    delegate = {
        **manager,
        "role_permissions": _rule(
            "role_permissions",
            select=ALL,
            insert=("other_role",),
            update=("other_role",),
            hard_delete=("other_role",),
        ),
        "user_permissions": _rule(
            "user_permissions",
            select=ALL,
            insert=("other",),
            update=("other",),
            hard_delete=("other",),
        ),
    }
    service = {relation: _everything(relation) for relation in ROW_KINDS}
    for log in ("user_activity_log", "change_log", "migration_log"):
        service[log] = _rule(log, select=ALL)
    return {
        "anon": {relation: _nothing(relation) for relation in ROW_KINDS},
        "agent": agent,
        "manager": manager,
        "admin": _admin(),
        "inactive": _locked_out(deleted=False),
        "deleted": _locked_out(deleted=True),
        "auditor": auditor,
        "expired": _agent(),
        "denied": denied,
        "delegate": delegate,
        "service_role": service,
    }


MODEL: dict[str, dict[str, Rule]] = _build()

# Columns an API user may write (table -> insert columns, update columns); every other column
# is the database's. Soft delete and restore are updates of deleted_at.
_CRM_WRITABLE: dict[str, tuple[str, ...]] = {
    "dispensary_profiles": (
        "name", "dba_name", "license_number", "license_status", "license_expires_on", "status",
        "contact_name", "phone", "email", "address_line1", "address_line2", "city", "county",
        "state", "postal_code", "assigned_agent_id", "notes", "metadata",
    ),
    "products": (
        "name", "sku", "category", "strain_type", "brand", "description", "thc_percent",
        "cbd_percent", "unit_size", "unit_price", "is_available", "metadata",
    ),
    "orders": (
        "dispensary_id", "agent_id", "status", "order_date", "requested_delivery_date",
        "delivered_at", "total_amount", "notes", "metadata",
    ),
    "order_items": ("order_id", "product_id", "quantity", "unit_price"),
    "communications": (
        "dispensary_id", "agent_id", "type", "subject", "body", "occurred_at", "follow_up_on",
        "metadata",
    ),
    "tasks": (
        "title", "description", "assigned_to", "dispensary_id", "status", "priority",
        "due_date", "completed_at", "metadata",
    ),
}  # fmt: skip
WRITABLE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    **{t: (cols, (*cols, "deleted_at")) for t, cols in _CRM_WRITABLE.items()},
    "profiles": (
        (),
        ("full_name", "role", "phone", "territory", "is_active", "metadata", "deleted_at"),
    ),
    "role_permissions": (("role", "permission", "resource"), ("role", "permission", "resource")),
    "user_permissions": (
        ("user_id", "permission", "resource", "granted", "expires_at", "reason"),
        ("permission", "resource", "granted", "expires_at", "reason"),
    ),
}
# Who may write what to a column beyond the row rules (the policies and guard triggers).
COLUMN_RULES: dict[str, str] = {
    "profiles.role, profiles.is_active, profiles.deleted_at": "admins only",
    "profiles.email": "follows auth.users.email (trigger); never written through the API",
    "dispensary_profiles.assigned_agent_id": "an agent: only itself",
    "orders.agent_id, communications.agent_id": "an agent: only itself",
    "orders.dispensary_id, communications.dispensary_id": "an agent: one of its dispensaries",
    "tasks.assigned_to": "an agent: itself or NULL",
    "tasks.dispensary_id": "an agent: one of its dispensaries or NULL",
    "tasks (assignee who did not create it)": "status and completed_at only",
    "order_items.order_id": "an order the writer may update",
    "role_permissions.*": "manage on permission, for a role other than one's own (admins: any)",
    "user_permissions.*": "manage on permission, never for oneself; granted_by = the writer",
    "deleted_at set (soft delete)": "delete permission on the resource (order lines: update "
    "on order); communications and tasks: one's own unless admin",
    "deleted_at cleared (restore)": "admins only",
}
# Identity and bookkeeping: the database's on insert and update for anon and authenticated; on
# update (a trigger) for every session too. service_role may give them on insert (imports).
DATABASE_COLUMNS = (
    "id",
    "created_at",
    "created_by",
    "order_number",
    "granted_by",
    "version",
    "edit_count",
    "updated_at",
    "updated_by",
    "deleted_by",
    "last_login_at",
    "login_count",
    "email (profiles)",
)

# Size bounds (characters for text; bytes of the text form for jsonb).
METADATA_BYTES = 8192
TEXT_BOUNDS: dict[str, dict[str, int]] = {
    "profiles": {"email": 320, "full_name": 200, "phone": 40, "territory": 200},
    "dispensary_profiles": {
        "name": 200,
        "dba_name": 200,
        "contact_name": 200,
        "phone": 40,
        "email": 320,
        "address_line1": 200,
        "address_line2": 200,
        "city": 100,
        "county": 100,
        "notes": 10000,
    },
    "products": {"name": 200, "sku": 64, "brand": 200, "description": 10000, "unit_size": 64},
    "orders": {"notes": 10000},
    "communications": {"subject": 500, "body": 20000},
    "tasks": {"title": 500, "description": 10000},
    "user_permissions": {"reason": 1000},
    "user_activity_log": {"user_agent": 512},
}
FORMAT_BOUNDED = {"dispensary_profiles": ("license_number", "state", "postal_code")}
JSONB_BOUNDED = (*(t for t in SOFT_DELETE_TABLES if t != "order_items"), "user_activity_log")

# Activity types an API caller may log through log_user_activity; the rest the database writes.
API_ACTIVITIES = ("login", "logout", "login_failed", "view", "export", "report_run")
DATABASE_ACTIVITIES = (
    "password_reset",
    "create",
    "update",
    "delete",
    "soft_delete",
    "restore",
    "permission_granted",
    "permission_revoked",
    "role_changed",
    "system",
)

_LABELS = {"select": "select", "soft_delete": "soft delete", "hard_delete": "hard delete"}


def render_tables() -> str:
    """The per-relation tables of docs/access-model.md, exactly as the doc holds them."""
    out = []
    for relation in ROW_KINDS:
        cmds = commands(relation)
        out.append(f"### `{relation}`\n")
        out.append("| actor | " + " | ".join(_LABELS.get(c, c) for c in cmds) + " |")
        out.append("|---|" + "---|" * len(cmds))
        for actor in ACTORS:
            rule = MODEL[actor][relation]
            cells = []
            for command in cmds:
                kinds = rule[command]
                if not kinds:
                    cells.append("—")
                elif kinds == ROW_KINDS[relation] and len(kinds) > 1:
                    cells.append("all")
                else:
                    cells.append(", ".join(kinds))
            out.append(f"| {actor} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def render_bounds() -> str:
    out = ["| table | column | bound |", "|---|---|---|"]
    for table, columns in TEXT_BOUNDS.items():
        out.extend(
            f"| {table} | {column} | {limit} characters |" for column, limit in columns.items()
        )
    out.extend(f"| {table} | metadata | {METADATA_BYTES} bytes |" for table in JSONB_BOUNDED)
    for table, formatted in FORMAT_BOUNDED.items():
        out.extend(f"| {table} | {column} | its format check |" for column in formatted)
    return "\n".join(out) + "\n"


def render_columns() -> str:
    out = ["| table | insert | update |", "|---|---|---|"]
    for table, (insert, update) in WRITABLE.items():
        out.append(f"| {table} | {', '.join(insert) or '—'} | {', '.join(update) or '—'} |")
    out += ["", "| column | rule |", "|---|---|"]
    out.extend(f"| {column} | {rule} |" for column, rule in COLUMN_RULES.items())
    return "\n".join(out) + "\n"


def allowed(actor: str, relation: str, command: str, kind: str) -> bool:
    return kind in MODEL[actor][relation][command]
