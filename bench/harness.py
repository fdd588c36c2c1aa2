"""What every benchmark shares: a database, timing, alternating A/B repeats, and the results
table that is printed and written to docs/benchmarks.md.

Comparisons run side by side in one process, A B A B ..., and report the median of each side
and the median of the per-pair ratios, so a machine that drifts (this one is shared) moves
both sides together.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from crm_schema.db import make_engine

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


@dataclass
class Row:
    group: str
    name: str
    value: str
    target: str = ""
    verdict: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)

    def add(
        self, group: str, name: str, value: str, target: str = "", ok: bool | None = None
    ) -> None:
        verdict = "" if ok is None else ("meets" if ok else "MISSES")
        self.rows.append(Row(group, name, value, target, verdict))
        mark = f"  [{verdict} {target}]" if target else ""
        print(f"    {name:<58} {value:>22}{mark}", flush=True)


def seconds(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


@dataclass(frozen=True)
class Pair:
    a: float  # median seconds, with this project's feature
    b: float  # median seconds, without it
    ratio: float  # median of the per-pair a/b ratios


def alternate(
    run_a: Callable[[], float], run_b: Callable[[], float], repeats: int = REPEATS
) -> Pair:
    """Run A and B in turn ``repeats`` times each; medians and the median pairwise ratio."""
    a_times, b_times = [], []
    for _ in range(repeats):
        a_times.append(run_a())
        b_times.append(run_b())
    ratios = [a / b for a, b in zip(a_times, b_times, strict=True) if b > 0]
    return Pair(statistics.median(a_times), statistics.median(b_times), statistics.median(ratios))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def engine_for(url: str) -> Engine:
    return make_engine(url)


def scalar(conn: Connection, sql: str, **params: object) -> object:
    return conn.execute(text(sql), params).scalar()


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"
