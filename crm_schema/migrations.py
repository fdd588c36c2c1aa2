"""Run this package's Alembic migrations from Python, with or without the repository.

In a checkout the scripts are the repository's ``alembic/`` folder; in an installed wheel
they are shipped as ``crm_schema/_migrations``. Either way the same revisions run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import URL

from crm_schema.db import connect_checked, make_engine, normalize_url

_PACKAGE_DIR = Path(__file__).resolve().parent
BASELINE_REVISION = "0002_crm_baseline"


def script_location() -> Path:
    """Where the migration scripts are: shipped in the wheel, or the checkout's ``alembic/``."""
    shipped = _PACKAGE_DIR / "_migrations"
    if (shipped / "env.py").is_file():
        return shipped
    checkout = _PACKAGE_DIR.parent / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    raise FileNotFoundError("crm_schema's migration scripts are missing from this installation")


def make_config(url: str | URL | None = None, output_buffer: TextIO | None = None) -> Config:
    """An Alembic config for these migrations; ``url`` overrides ``DATABASE_URL``.

    ``output_buffer`` receives the SQL in offline (``sql=True``) mode.
    """
    config = Config(output_buffer=output_buffer)
    config.set_main_option("script_location", str(script_location()))
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        # ConfigParser interpolation would read a '%' in a password as a reference.
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(make_config())


def revisions_in_order() -> list[Script]:
    """Every revision, oldest first."""
    return list(reversed(list(script_directory().walk_revisions())))


def revision_ids() -> list[str]:
    """Every revision's id, oldest first."""
    return [s.revision for s in revisions_in_order()]


def current_revision(url: str | URL) -> str | None:
    """The revision the database is at, or ``None`` for an unmigrated database."""
    with connect_checked(make_engine(url)) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | URL, revision: str = "head") -> dict[str, int]:
    """Upgrade to ``revision``; returns how many tries each commit needed to get its locks."""
    config = make_config(url)
    command.upgrade(config, revision)
    return dict(config.attributes.get("lock_attempts", {}))


def downgrade(url: str | URL, revision: str) -> dict[str, int]:
    """Downgrade to ``revision``; returns how many tries each commit needed for its locks."""
    config = make_config(url)
    command.downgrade(config, revision)
    return dict(config.attributes.get("lock_attempts", {}))


def commits_with_next(script: Script) -> bool:
    """True for a revision that runs in one transaction with the next one (see
    :mod:`crm_schema.transactions`): a run never stops after it."""
    return bool(getattr(script.module, "commit_with_next", False))


def pending_commits(url: str | URL, target: str = "head") -> list[list[Script]]:
    """What an upgrade to ``target`` will commit, in order: each a revision, or the revisions
    that commit together."""
    current = current_revision(url)
    scripts = revisions_in_order()
    ids = [s.revision for s in scripts]
    start = ids.index(current) + 1 if current in ids else 0
    wanted = script_directory().get_revision(target)
    stop = ids.index(wanted.revision) + 1 if wanted is not None else len(ids)
    return commits(scripts[start:stop])


def commits(scripts: list[Script] | None = None) -> list[list[Script]]:
    """The revisions (all by default, oldest first) cut into what commits as one."""
    batches: list[list[Script]] = []
    batch: list[Script] = []
    for script in revisions_in_order() if scripts is None else scripts:
        batch.append(script)
        if not commits_with_next(script):
            batches.append(batch)
            batch = []
    return batches + ([batch] if batch else [])


def stamp(url: str | URL, revision: str = BASELINE_REVISION) -> None:
    """Record ``revision`` without running it: adopting an existing baseline (after preflight)."""
    config = make_config(url)
    config.attributes["crm_schema.stamping"] = True  # runbook.baseline.STAMPING
    command.stamp(config, revision)


@dataclass(frozen=True)
class StepResult:
    revision: str
    doc: str
    seconds: float
    lock_attempts: int = 1


def upgrade_stepwise(
    url: str | URL,
    target: str = "head",
    on_start: Callable[[str], None] | None = None,
) -> Iterator[StepResult]:
    """Upgrade one commit at a time, yielding each with its duration (for progress output).
    Revisions that commit together are one step, named ``A + B``."""
    for batch in pending_commits(url, target):
        label = " + ".join(s.revision for s in batch)
        if on_start is not None:
            on_start(label)
        began = time.perf_counter()
        attempts = upgrade(url, batch[-1].revision)
        doc = "; ".join((s.doc or "").splitlines()[0] for s in batch if s.doc)
        yield StepResult(label, doc, time.perf_counter() - began, attempts.get(label, 1))
