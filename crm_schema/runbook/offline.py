"""The seed's two SQL files, from Alembic's offline mode, for review and for ``psql -f``."""

from __future__ import annotations

from pathlib import Path

from alembic import command

from crm_schema import migrations

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
