"""Upgrade and rollback of a CRM in use: what its clients see (issue 11's figures).

Eight clients (``BENCH_CLIENTS``) do the CRM's usual work throughout (bench/live_traffic.py):
for ``BENCH_SETTLE`` seconds before, then while ``crm-schema upgrade`` runs, for as long
again, while ``crm-schema rollback --yes`` runs, and for as long after. Reported per window:
requests, p50 / p99 / max latency, errors by kind; and the time each run took. The goals: no
failed request, the longest stall at most 250 ms, p99 during a run at most 2x p99 before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import Results, ms
from bench.live_traffic import Traffic
from crm_schema import migrations

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
SETTLE = float(os.environ.get("BENCH_SETTLE", "10"))
REPO = Path(__file__).resolve().parents[1]


def _crm(*args: str) -> tuple[int, float, str]:
    began = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "crm_schema.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    return run.returncode, time.perf_counter() - began, (run.stderr.strip() or run.stdout[-300:])


def live_migration(url: str, results: Results) -> None:
    if migrations.current_revision(url) != migrations.BASELINE_REVISION:
        raise RuntimeError("the live-migration benchmark starts at the baseline")
    logs = REPO / ".crm-bench" / "migration-logs"
    with Traffic(url, clients=CLIENTS) as traffic:
        traffic.mark("start")
        time.sleep(SETTLE)
        traffic.mark("upgrade")
        up = _crm("upgrade", "--url", url, "--log-dir", str(logs))
        traffic.mark("upgraded")
        time.sleep(SETTLE)
        traffic.mark("rollback")
        down = _crm("rollback", "--yes", "--url", url)
        traffic.mark("rolled back")
        time.sleep(SETTLE)
        traffic.mark("end")
    reached = migrations.current_revision(url)
    group = f"live migration ({CLIENTS} clients)"
    for name, (code, seconds, said) in (("upgrade", up), ("rollback", down)):
        results.add(group, f"{name}: time to complete", f"{seconds:.1f} s (exit {code})")
        if code not in (0, 1):  # 1: upgrade's verification failed, the migration finished
            results.add(group, f"{name}: FAILED", said[:160])
    results.add(
        group, "rollback ended at the baseline", str(reached), "yes", reached == "0002_crm_baseline"
    )
    # What each run is compared with: the traffic just before it (the rollback starts from
    # head, where requests cost more than at the baseline: RLS helpers, triggers).
    just_before = {
        "during upgrade": traffic.summary("start", "upgrade"),
        "during rollback": traffic.summary("upgraded", "rollback"),
    }
    windows = {
        "before": ("start", "upgrade"),
        "during upgrade": ("upgrade", "upgraded"),
        "between": ("upgraded", "rollback"),
        "during rollback": ("rollback", "rolled back"),
        "after": ("rolled back", "end"),
    }
    for label, (start, end) in windows.items():
        figures = traffic.summary(start, end)
        if not figures["requests"]:
            continue
        results.add(
            group,
            f"{label}: p50 / p99 / max",
            f"{ms(figures['p50_ms'] / 1000)} / {ms(figures['p99_ms'] / 1000)} / "
            f"{ms(figures['max_ms'] / 1000)} ({figures['requests']:,} requests)",
        )
        if label.startswith("during"):
            results.add(
                group,
                f"{label}: longest stall",
                ms(figures["max_ms"] / 1000),
                "<= 250 ms",
                figures["max_ms"] <= 250,
            )
            ratio = figures["p99_ms"] / just_before[label]["p99_ms"]
            results.add(
                group, f"{label}: p99 / p99 just before", f"{ratio:.2f}x", "<= 2x", ratio <= 2
            )
    errors = traffic.errors()
    results.add(
        group,
        "failed requests, by kind",
        ", ".join(f"{kind}: {n}" for kind, n in errors.items()) or "none",
        "none",
        not errors,
    )
