"""What Supabase's database advisor (its linter, splinter) reports on this schema on purpose.

With pg_graphql installed, as on a new Supabase project, lint 0027
``pg_graphql_authenticated_table_exposed`` warns about every table and view the
``authenticated`` role may select: pg_graphql puts its name and columns in the GraphQL schema
every signed-in user can introspect. The CRM's signed-in users read their tables through the
Data API, so the relations the access model lets them read must stay readable; Row Level
Security then decides which rows each one sees. Those warnings are the design, and this
module names them by the advisor's cache keys (derived from the access model, never listed by
hand), so a DBA can mark exactly them as intended and treat any other finding as new.
Nothing else is meant to be found: lint 0026 (``anon``) raises nothing.
"""

from __future__ import annotations

from crm_schema import access_model
from crm_schema.models import Base

GRAPHQL_AUTHENTICATED = "pg_graphql_authenticated_table_exposed"
GRAPHQL_ANON = "pg_graphql_anon_table_exposed"
API_SCHEMA = "public"
# The actors who call the API as `authenticated` (the others are anon and the service key).
SIGNED_IN = tuple(actor for actor in access_model.ACTORS if actor not in ("anon", "service_role"))
ALLOWLIST_FILE = "crm_schema_intended_advisor_findings.txt"


def _readers(actors: tuple[str, ...]) -> tuple[str, ...]:
    model = access_model.MODEL
    return tuple(
        relation
        for relation in access_model.ROW_KINDS
        if any(model[actor][relation]["select"] for actor in actors)
    )


def signed_in_reads() -> tuple[str, ...]:
    """The relations some signed-in user may read rows of: exactly the ones `authenticated`
    may select (each in schema public)."""
    return _readers(SIGNED_IN)


def anon_reads() -> tuple[str, ...]:
    """The relations `anon` may select: none."""
    return _readers(("anon",))


def partitioned() -> frozenset[str]:
    """The partitioned tables: pg_graphql shows no partitioned table (only its partitions, and
    this schema grants no API role anything on a partition)."""
    return frozenset(
        table.name
        for table in Base.metadata.tables.values()
        if table.schema is None and table.dialect_options["postgresql"].get("partition_by")
    )


def cache_key(lint: str, schema: str, name: str) -> str:
    """The advisor's cache key of a table-level finding of lint 0026 or 0027."""
    return f"{lint}_{schema}_{name}"


def intended_findings() -> tuple[str, ...]:
    """The cache keys of the advisor's findings this schema raises on purpose (with
    pg_graphql installed; without it, none)."""
    hidden = partitioned()
    return tuple(
        sorted(
            cache_key(GRAPHQL_AUTHENTICATED, API_SCHEMA, relation)
            for relation in signed_in_reads()
            if relation not in hidden
        )
    )


def allowlist_text() -> str:
    """The intended findings as a file: one cache key a line, after a short explanation."""
    header = (
        "# Supabase's advisor findings crm-schema raises on purpose, by cache key.\n"
        "# With pg_graphql installed, lint 0027 (pg_graphql_authenticated_table_exposed)\n"
        "# reports each table and view signed-in users read through the Data API (Row Level\n"
        "# Security decides which rows). These are those relations, from the access model\n"
        "# (docs/access-model.md); any finding not listed here is new and worth a look.\n"
        "# A project that does not use GraphQL can drop pg_graphql: then none are raised.\n"
    )
    return header + "".join(f"{key}\n" for key in intended_findings())
