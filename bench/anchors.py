"""The public audit triggers this project's change tracking is measured against.

Their SQL is third-party code under its own licence and is never copied into this project: it is
read, at bench time, from the shared anchors folder (``BENCH_ANCHORS``, by default
``../shared/anchors`` beside the repository), loaded into the bench database and attached to
``public.orders`` next to this project's triggers, so that every design runs on the same table.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from crm_schema.db import first_line

REPO = Path(__file__).resolve().parents[1]
FOLDER = Path(os.environ.get("BENCH_ANCHORS", REPO.parent / "shared" / "anchors"))


@dataclass(frozen=True)
class Anchor:
    name: str
    script: str  # path inside FOLDER
    triggers: tuple[str, ...]  # what it creates on the audited table, by name


AUDIT_91PLUS = Anchor(
    "audit-trigger 91plus", "audit-trigger-91plus/audit.sql", ("audit_trigger_row",)
)
SUPA_AUDIT = Anchor("supa_audit 0.3.1", "supa_audit/supa_audit--0.3.1.sql", ("audit_i_u_d",))
ANCHORS = (AUDIT_91PLUS, SUPA_AUDIT)


def _91plus_sql(sql: str) -> str:
    # Both anchors create schema "audit": 91plus gets "audit91" so both fit in one database.
    return re.sub(r"\baudit\.", "audit91.", re.sub(r"SCHEMA audit\b", "SCHEMA audit91", sql))


def _supa_audit_sql(sql: str) -> str:
    # An extension script run as plain SQL: pg_extension_config_dump works only inside
    # CREATE EXTENSION.
    return "\n".join(line for line in sql.splitlines() if "pg_extension_config_dump" not in line)


def _script(conn: Connection, sql: str) -> None:
    """Run a whole script as it is: no placeholders (their '%' are format() specifiers)."""
    with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(sql)


def _uuid_ossp(conn: Connection, notes: list[str]) -> None:
    """supa_audit requires uuid-ossp: uuid_generate_v4() (tables without a primary key; orders
    has one, so it is never called here) and uuid_generate_v5() (each row's record id, called
    on every change). Where the server lacks the extension (the embedded PostgreSQL), core
    functions stand in under those names: gen_random_uuid(), and an md5 of the namespace and
    the name for v5 (v5 hashes them with SHA-1; one hash per row either way)."""
    available = conn.execute(
        text("SELECT count(*) FROM pg_available_extensions WHERE name = 'uuid-ossp'")
    ).scalar()
    if available:
        conn.execute(text('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"'))
        return
    conn.execute(
        text(
            "CREATE FUNCTION public.uuid_generate_v4() RETURNS uuid LANGUAGE sql "
            "AS 'SELECT gen_random_uuid()';\n"
            "CREATE FUNCTION public.uuid_generate_v5(namespace uuid, name text) RETURNS uuid "
            "LANGUAGE sql IMMUTABLE AS 'SELECT md5(namespace::text || name)::uuid'"
        )
    )
    notes.append("supa_audit: no uuid-ossp here; core functions stand in for v4 and v5 (md5)")


def load(conn: Connection, table: str = "public.orders") -> tuple[list[Anchor], list[str]]:
    """Load each anchor found and attach it (its triggers disabled) to ``table``; returns the
    anchors loaded and one line for each that is missing."""
    loaded, missing = [], []
    for anchor in ANCHORS:
        path = FOLDER / anchor.script
        if not path.is_file():
            missing.append(f"{anchor.name}: not found at {path}, not measured")
            continue
        sql = path.read_text()
        conn.execute(text("SAVEPOINT anchor"))
        try:
            if anchor is AUDIT_91PLUS:
                _script(conn, _91plus_sql(sql))
                conn.execute(text("SELECT audit91.audit_table(CAST(:t AS regclass))"), {"t": table})
            else:
                _uuid_ossp(conn, missing)
                _script(conn, _supa_audit_sql(sql))
                conn.execute(
                    text("SELECT audit.enable_tracking(CAST(:t AS regclass))"), {"t": table}
                )
        except DBAPIError as exc:  # one anchor that will not load does not stop the others
            conn.execute(text("ROLLBACK TO SAVEPOINT anchor"))
            missing.append(f"{anchor.name}: failed to load ({first_line(exc)}), not measured")
            continue
        # Only the row triggers are measured; the TRUNCATE ones never fire here.
        conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        loaded.append(anchor)
    return loaded, missing


def unload(conn: Connection, table: str = "public.orders") -> None:
    """Detach and drop whatever ``load`` created, so later steps see the CRM alone."""
    for trigger in ("audit_trigger_row", "audit_trigger_stm", "audit_i_u_d", "audit_t"):
        conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger} ON {table}"))
    conn.execute(text("DROP SCHEMA IF EXISTS audit91 CASCADE"))
    conn.execute(text("DROP SCHEMA IF EXISTS audit CASCADE"))
    # What the anchors needed; this project uses neither.
    conn.execute(text('DROP EXTENSION IF EXISTS hstore, "uuid-ossp"'))
    conn.execute(text("DROP FUNCTION IF EXISTS public.uuid_generate_v4()"))
    conn.execute(text("DROP FUNCTION IF EXISTS public.uuid_generate_v5(uuid, text)"))
