"""`crm-schema sql --supabase DIR`: a Supabase CLI project's migrations, one file per commit.

Applied in order with ``psql -f`` (as ``supabase db reset`` and ``db push`` apply them), they
give exactly the schema Alembic gives, and keep ``alembic_version`` right, so a team can move
between the two tools at any step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from crm_schema import advisor, migrations
from tests import catalog
from tests.supabase_lints import run_lints
from tests.test_cli import alembic, crm, psql_file, url_text

HEAD = migrations.revisions_in_order()[-1].revision


def _write(project: Path) -> list[Path]:
    result = crm("sql", "--supabase", str(project))
    assert result.returncode == 0, result.stderr
    return sorted((project / "supabase" / "migrations").glob("*.sql"))


def _apply(url: URL, files: list[Path]) -> None:
    for path in files:
        applied = psql_file(url, path)
        assert applied.returncode == 0, f"{path.name}: {applied.stderr}"


def test_one_timestamped_file_per_commit(tmp_path: Path) -> None:
    names = [p.name for p in _write(tmp_path)]
    expected = [
        f"{date}{int(s[0].revision[:4]):06d}_" + "_and_".join(r.revision[5:] for r in s) + ".sql"
        for s, date in zip(migrations.commits(), ["20261124"] * 7 + ["20261201"], strict=True)
    ]
    assert names == expected
    assert "20261124000003_phase1_schema_structure.sql" in names
    # 0006 and 0007 commit together, so they share one file.
    assert "20261124000006_phase4_security_policies_and_phase5_default_data.sql" in names
    # Written again, the files keep their names: the Supabase CLI tracks them by version.
    assert [p.name for p in _write(tmp_path)] == names


def test_psql_in_order_gives_alembics_schema_and_version(
    empty_db_url: URL, db_url: URL, make_engine: Any, tmp_path: Path
) -> None:
    _apply(empty_db_url, _write(tmp_path))
    with make_engine(empty_db_url).connect() as applied, make_engine(db_url).connect() as head:
        assert catalog.diff(catalog.snapshot(head), catalog.snapshot(applied)) == ""
    current = alembic("current", DATABASE_URL=url_text(empty_db_url))
    assert current.returncode == 0, current.stderr
    assert f"{HEAD} (head)" in current.stdout


def test_the_advisor_findings_written_are_exactly_what_the_advisor_raises(
    db_url: URL, make_engine: Any, tmp_path: Path
) -> None:
    """Beside the migrations, the cache keys of the findings the schema raises on purpose (lint
    0027 with pg_graphql): a DBA marks these as intended, and any other finding is new."""
    _write(tmp_path)
    written = (tmp_path / "supabase" / advisor.ALLOWLIST_FILE).read_text().splitlines()
    keys = [line for line in written if line and not line.startswith("#")]
    with make_engine(db_url).connect() as connection:
        raised = sorted(
            advisor.cache_key(f.lint, *f.object.split(".", 1))
            for f in run_lints(connection, graphql=True)
            if f.level in ("ERROR", "WARN")
        )
    assert keys == raised == list(advisor.intended_findings())
    assert len(keys) == 16


def test_a_team_can_switch_to_alembic_part_way(
    empty_db_url: URL, db_url: URL, make_engine: Any, tmp_path: Path
) -> None:
    files = _write(tmp_path)
    _apply(empty_db_url, files[:4])  # up to 0004, as the Supabase CLI would
    assert migrations.current_revision(empty_db_url) == "0004_phase2_indexes_constraints"
    upgraded = alembic("upgrade", "head", DATABASE_URL=url_text(empty_db_url))
    assert upgraded.returncode == 0, upgraded.stderr
    with make_engine(empty_db_url).connect() as applied, make_engine(db_url).connect() as head:
        assert catalog.diff(catalog.snapshot(head), catalog.snapshot(applied)) == ""
