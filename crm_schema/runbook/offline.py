"""SQL files from Alembic's offline mode: the seed's two, for review and for ``psql -f``, and
a Supabase CLI project's migrations, one per commit."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.script import Script

from crm_schema import advisor, migrations
from crm_schema.runbook import pgtap

UPGRADE_FILE = "enhanced-schema-migration.sql"
ROLLBACK_FILE = "rollback-enhanced-schema.sql"


def write(out_dir: Path) -> list[Path]:
    """Write the upgrade (baseline to head) and the rollback (head to baseline) scripts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    head = migrations.revisions_in_order()[-1].revision
    base = migrations.BASELINE_REVISION
    written = []
    for name, run, span in (
        (UPGRADE_FILE, command.upgrade, f"{base}:{head}"),
        (ROLLBACK_FILE, command.downgrade, f"{head}:{base}"),
    ):
        path = out_dir / name
        with path.open("w") as buffer:
            config = migrations.make_config(output_buffer=buffer)
            run(config, span, sql=True)
        written.append(path)
    return written


def _stamp(batch: list[Script]) -> str:
    """A commit's migration version: its first revision's creation date and number.

    Fixed per revision, so files written again keep their names: the Supabase CLI knows a
    migration applied by this version, and never runs it twice.
    """
    first = batch[0]
    found = re.search(r"Create Date: (\d{4})-(\d{2})-(\d{2})", first.module.__doc__ or "")
    if found is None:
        raise ValueError(f"revision {first.revision} has no Create Date")
    number = int(first.revision.split("_", 1)[0])
    return "".join(found.groups()) + f"{number:06d}"


def supabase_migration_name(batch: list[Script]) -> str:
    """E.g. ``20261124000003_phase1_schema_structure.sql``; revisions that commit together
    share one file, named for all of them."""
    names = "_and_".join(s.revision.split("_", 1)[1] for s in batch)
    return f"{_stamp(batch)}_{names}.sql"


def write_supabase(project_dir: Path) -> list[Path]:
    """One migration file per commit, in ``supabase/migrations/`` of a Supabase CLI project,
    the pgTAP test of the access model in ``supabase/tests/``, and in ``supabase/`` the cache
    keys of the advisor findings the schema raises on purpose (crm_schema.advisor).

    Each is Alembic's offline SQL for that step: the first creates ``alembic_version`` and
    every one moves it on, so ``alembic current`` stays right and a team can switch tools.
    """
    out_dir = project_dir / "supabase" / "migrations"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    previous: str | None = None
    for batch in migrations.commits():
        last = batch[-1].revision
        path = out_dir / supabase_migration_name(batch)
        with path.open("w") as buffer:
            config = migrations.make_config(output_buffer=buffer)
            command.upgrade(config, f"{previous}:{last}" if previous else last, sql=True)
        written.append(path)
        previous = last
    tests = project_dir / "supabase" / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    (tests / pgtap.TEST_FILE).write_text(pgtap.TEST_SQL)
    intended = project_dir / "supabase" / advisor.ALLOWLIST_FILE
    intended.write_text(advisor.allowlist_text())
    return [*written, tests / pgtap.TEST_FILE, intended]
