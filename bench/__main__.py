"""``make bench``: the seed's performance promises, measured at scale on this machine.

Environment: ``BENCH_SCALE`` (default 1: a million orders), ``BENCH_REPEATS`` (default 3),
``CRM_BENCH_DATABASE_URL`` (a server to use; by default an embedded PostgreSQL in
``.crm-bench/``), ``BENCH_ONLY`` (a comma-separated list of step titles to run alone).
Prints each figure with its target as it goes, then writes ``docs/benchmarks.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url

from bench import workloads
from bench.harness import REPEATS, Results, engine_for
from bench.live_migration import live_migration
from crm_schema import embedded, migrations, seed_data
from crm_schema.db import make_engine

REPO = Path(__file__).resolve().parents[1]
StepList = tuple[tuple[str, Callable[[], None]], ...]
DATABASE = f"crm_bench_{os.getpid()}"
# BENCH_ONLY="Title,Title": run only those steps (a quick check); the figures are printed,
# and docs/benchmarks.md, which holds a whole run, is left alone.
ONLY = {t.strip() for t in os.environ.get("BENCH_ONLY", "").split(",") if t.strip()}


def _servers() -> list[str]:
    """Which servers to run on: the one ``CRM_BENCH_DATABASE_URL`` names (Supabase's
    PostgreSQL 15 here) and the embedded one (PostgreSQL 18); ``BENCH_SERVERS=given`` or
    ``embedded`` keeps one. Figures measured on 18 can hide costs that 15 pays: both by default."""
    wanted = os.environ.get("BENCH_SERVERS", "given,embedded").split(",")
    chosen = [w for w in ("given", "embedded") if w in wanted]
    if not os.environ.get("CRM_BENCH_DATABASE_URL"):
        chosen = [w for w in chosen if w != "given"] or ["embedded"]
    return chosen


def _server(which: str) -> tuple[URL, embedded.EmbeddedServer | None]:
    if which == "given":
        given = os.environ["CRM_BENCH_DATABASE_URL"]
        return make_url(given).set(drivername="postgresql+psycopg"), None
    server = embedded.start(REPO / ".crm-bench" / "pgdata")
    return server.url(), server


def _create(maintenance: URL) -> URL:
    with make_engine(maintenance).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    return maintenance.set(database=DATABASE)


def _drop(maintenance: URL) -> None:
    with make_engine(maintenance).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))


def _machine(url: str) -> list[str]:
    memory = next(
        (
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "?",
    )
    with make_engine(url).connect() as conn:
        server = conn.execute(text("SHOW server_version")).scalar_one()
    return [
        f"PostgreSQL {server.split()[0]}",
        f"- date: {dt.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{int(memory) // 1024 // 1024 if memory.isdigit() else '?'} GiB memory (shared, noisy)",
        f"- PostgreSQL {server}; Python {platform.python_version()}",
    ]


def _write(runs: list[tuple[Results, list[str]]], scale: float, minutes: float) -> Path:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (scale S = {scale:g}, median of {REPEATS} alternating repeats; "
        f"the run took {minutes:.0f} minutes), once on each server.",
        "",
    ]
    for results, facts in runs:
        lines += [
            f"## {facts[0]}",
            "",
            *facts[1:],
            "",
            "| group | measurement | figure | target | |",
            "|---|---|---|---|---|",
            *(
                f"| {r.group} | {r.name.strip()} | {r.value} | {r.target} | {r.verdict} |"
                for r in results.rows
            ),
            "",
        ]
    path = REPO / "docs" / "benchmarks.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _steps(text_url: str, engine: Engine, scale: float, results: Results) -> StepList:
    return (
        ("Migration under live traffic", lambda: live_migration(text_url, results)),
        ("Migration at scale", lambda: workloads.migration_at_scale(text_url, engine, results)),
        # Storage first: later benchmarks roll back writes, which leaves dead rows behind.
        ("Storage after a day's traffic", lambda: workloads.storage(engine, results)),
        (
            "Change tracking beside public audit triggers",
            lambda: workloads.change_tracking(engine, results),
        ),
        ("RLS overhead", lambda: workloads.rls_overhead(engine, results)),
        ("Activity logging", lambda: workloads.activity_logging(engine, scale, results)),
        (
            "Archive a month to files and back",
            lambda: workloads.archive_to_files(engine, scale, results),
        ),
    )


def _run_on(which: str, scale: float) -> tuple[Results, list[str]]:
    """Every step on one server, in a database of its own; the results and the server facts."""
    maintenance, server = _server(which)
    url = _create(maintenance)
    text_url = url.render_as_string(hide_password=False)
    engine = engine_for(text_url)
    results = Results()
    try:
        facts = _machine(text_url)
        print(f"On {facts[0]}:", flush=True)
        migrations.upgrade(text_url, migrations.BASELINE_REVISION)
        print("Loading the baseline CRM:", flush=True)
        with engine.connect() as conn:
            counts = seed_data.generate(
                conn,
                scale,
                progress=lambda t, n, s: print(f"    {t:<22}{n:>10,}  {s:6.1f}s", flush=True),
            )
        results.add("data", "sample CRM loaded", f"{counts.orders:,} orders")
        for title, step in _steps(text_url, engine, scale, results):
            if ONLY and title not in ONLY:
                if title == "Migration at scale":  # the steps after it need the schema at head
                    migrations.upgrade(text_url, "head")
                continue
            print(f"{title}:", flush=True)
            step()
    finally:
        engine.dispose()
        _drop(maintenance)
        if server is not None:
            server.stop()
    return results, facts


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    began = time.perf_counter()
    servers = _servers()
    print(
        f"Benchmarks at scale {scale:g} ({seed_data.counts_for(scale).orders:,} orders), "
        f"{REPEATS} repeats, on {' and '.join(servers)}; at scale 1 this takes about 20 "
        "minutes a server.",
        flush=True,
    )
    runs = [_run_on(which, scale) for which in servers]
    minutes = (time.perf_counter() - began) / 60
    if ONLY:
        print(f"\nBENCH_ONLY set: docs/benchmarks.md left alone ({minutes:.1f} minutes).")
        return
    path = _write(runs, scale, minutes)
    print(f"\nWrote {path.relative_to(REPO)} ({minutes:.1f} minutes).")


if __name__ == "__main__":
    main()
