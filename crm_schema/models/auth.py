"""Supabase's ``auth.users``, described only so foreign keys to it resolve.

Supabase owns this table (on vanilla PostgreSQL, revision ``0001_supabase_compat`` creates a
minimal one); this package never creates, alters or compares it.
"""

from __future__ import annotations

from sqlalchemy import Column, Table, Text
from sqlalchemy.dialects.postgresql import UUID

from crm_schema.models.base import metadata

auth_users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text),
    schema="auth",
)
