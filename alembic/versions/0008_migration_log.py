"""The seed's Migration Log Template as a table: one row per ``crm-schema upgrade`` run.

Revision ID: 0008_migration_log
Revises: 0007_phase5_default_data
Create Date: 2026-11-24

Columns follow the template: migration date, start and end time, executed by, verification
status, issues encountered, rollback required, notes; plus the revisions moved between and
each phase's timing. Written by ``crm-schema upgrade`` as the database owner; readable through
the API by admins only; never written through the API.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_migration_log"
down_revision: str | Sequence[str] | None = "0007_phase5_default_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE public.migration_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    migration_date date NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    executed_by text NOT NULL,
    from_revision text,
    to_revision text,
    verification_status text NOT NULL,
    issues_encountered text,
    rollback_required boolean NOT NULL DEFAULT false,
    notes text,
    phases jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT migration_log_verification_status_check
        CHECK (verification_status IN ('PASS', 'FAIL', 'NOT RUN'))
);
COMMENT ON TABLE public.migration_log IS
    'The seed''s Migration Log Template, one row per crm-schema upgrade run.';
ALTER TABLE public.migration_log ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE public.migration_log FROM anon, authenticated, service_role;
GRANT SELECT ON TABLE public.migration_log TO authenticated, service_role;
CREATE POLICY migration_log_select ON public.migration_log FOR SELECT TO authenticated
    USING ((SELECT public.is_admin()));
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE public.migration_log;")
