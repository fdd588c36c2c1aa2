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
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from bench import workloads
from bench.harness import REPEATS, Results, engine_for
from crm_schema import embedded, migrations, seed_data
from crm_schema.db import make_engine

REPO = Path(__file__).resolve().parents[1]
DATABASE = f"crm_bench_{os.getpid()}"
# BENCH_ONLY="Title,Title": run only those steps (a quick check); the figures are printed,
# and docs/benchmarks.md, which holds a whole run, is left alone.
ONLY = {t.strip() for t in os.environ.get("BENCH_ONLY", "").split(",") if t.strip()}


def _server() -> tuple[URL, embedded.EmbeddedServer | None]:
    given = os.environ.get("CRM_BENCH_DATABASE_URL")
    if given:
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
        f"- date: {dt.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{int(memory) // 1024 // 1024 if memory.isdigit() else '?'} GiB memory (shared, noisy)",
        f"- PostgreSQL {server}; Python {platform.python_version()}",
    ]


def _write(results: Results, facts: list[str], scale: float, minutes: float) -> Path:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (scale S = {scale:g}, median of {REPEATS} alternating repeats; "
        f"the run took {minutes:.0f} minutes).",
        "",
        *facts,
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


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    began = time.perf_counter()
    print(
        f"Benchmarks at scale {scale:g} ({seed_data.counts_for(scale).orders:,} orders), "
        f"{REPEATS} repeats; at scale 1 this takes about 15 minutes.",
        flush=True,
    )
    maintenance, server = _server()
    url = _create(maintenance)
    text_url = url.render_as_string(hide_password=False)
    engine = engine_for(text_url)
    results = Results()
    try:
        migrations.upgrade(text_url, migrations.BASELINE_REVISION)
        print("Loading the baseline CRM:", flush=True)
        with engine.connect() as conn:
            counts = seed_data.generate(
                conn,
                scale,
                progress=lambda t, n, s: print(f"    {t:<22}{n:>10,}  {s:6.1f}s", flush=True),
            )
        results.add("data", "sample CRM loaded", f"{counts.orders:,} orders")
        if ONLY and "Migration at scale" not in ONLY:
            migrations.upgrade(text_url, "head")  # the steps after it need the schema at head
        for title, step in (
            ("Migration at scale", lambda: workloads.migration_at_scale(text_url, engine, results)),
            # Storage first: later benchmarks roll back writes, which leaves dead rows behind.
            ("Storage after a day's traffic", lambda: workloads.storage(engine, results)),
            (
                "Change-tracking overhead (orders)",
                lambda: workloads.change_tracking(engine, results),
            ),
            ("RLS overhead", lambda: workloads.rls_overhead(engine, results)),
            ("Activity logging", lambda: workloads.activity_logging(engine, scale, results)),
            (
                "Archive a month to files and back",
                lambda: workloads.archive_to_files(engine, scale, results),
            ),
        ):
            if ONLY and title not in ONLY:
                continue
            print(f"{title}:", flush=True)
            step()
        facts = _machine(text_url)
    finally:
        engine.dispose()
        _drop(maintenance)
        if server is not None:
            server.stop()
    minutes = (time.perf_counter() - began) / 60
    if ONLY:
        print(f"\nBENCH_ONLY set: docs/benchmarks.md left alone ({minutes:.1f} minutes).")
        return
    path = _write(results, facts, scale, minutes)
    print(f"\nWrote {path.relative_to(REPO)} ({minutes:.1f} minutes).")


if __name__ == "__main__":
    main()
