"""The measurements: migration at scale, change-tracking overhead, RLS overhead, activity
logging, partition maintenance, archiving a month to files and back, and audit storage."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from bench import anchors
from bench.harness import REPEATS, Results, alternate, ms, percentile, scalar, seconds
from crm_schema import migrations
from crm_schema.runbook import archive_files, partitions
from crm_schema.runbook.baseline import CRM_TABLES

BASELINE = migrations.BASELINE_REVISION
BIG_TABLES = ("orders", "order_items", "dispensary_profiles")


# --- 1. migration at scale ---------------------------------------------------------------


class LockProbe:
    """Reads one row of each big table every 20 ms from another connection. A read waits
    only behind an ACCESS EXCLUSIVE lock, so the longest read is the longest such lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.worst: dict[str, float] = dict.fromkeys(BIG_TABLES, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            while not self._stop.is_set():
                for table in BIG_TABLES:
                    began = time.perf_counter()
                    conn.execute(text(f"SELECT 1 FROM public.{table} LIMIT 1"))
                    self.worst[table] = max(self.worst[table], time.perf_counter() - began)
                time.sleep(0.02)

    def __enter__(self) -> LockProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def migration_at_scale(url: str, engine: Engine, results: Results) -> None:
    ups: list[dict[str, float]] = []
    downs: list[float] = []
    worst_lock = dict.fromkeys(BIG_TABLES, 0.0)
    for attempt in range(REPEATS):
        steps: dict[str, float] = {}
        with LockProbe(engine) as probe:
            for step in migrations.upgrade_stepwise(url, "head"):
                steps[step.revision] = step.seconds
        ups.append(steps)
        for table, worst in probe.worst.items():
            worst_lock[table] = max(worst_lock[table], worst)
        print(f"    upgrade {attempt + 1}/{REPEATS}: {sum(steps.values()):.1f}s", flush=True)
        downs.append(seconds(lambda: migrations.downgrade(url, BASELINE)))
    migrations.upgrade(url, "head")  # later benchmarks work at head
    total = statistics.median(sum(s.values()) for s in ups)
    results.add(
        "migration", "baseline -> head, total (median)", f"{total:.1f} s", "<= 60 s", total <= 60
    )
    for revision in ups[0]:
        results.add(
            "migration", f"  {revision}", f"{statistics.median(s[revision] for s in ups):.2f} s"
        )
    results.add("migration", "head -> baseline (median)", f"{statistics.median(downs):.1f} s")
    for table, worst in worst_lock.items():
        results.add(
            "migration",
            f"longest wait to read {table} (ACCESS EXCLUSIVE)",
            ms(worst),
            "<= 1 s",
            worst <= 1.0,
        )


# --- 2. change tracking beside the public audit triggers -----------------------------------

# The same six workloads on public.orders under each design's triggers and under none. Each
# design's figure is its time divided by the time with no trigger in the same round; rounds
# rotate the order of the designs, so a machine that drifts (this one is shared) moves them
# together. The median of the rounds is reported with the spread (lowest-highest).
TRACKING_SETUP = """
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.targets;
-- The orders the update workloads change: 100 000 real ones, never the delete's fodder.
CREATE TABLE bench.targets AS
    SELECT row_number() OVER (ORDER BY id) AS n, id FROM public.orders
     WHERE notes IS DISTINCT FROM 'bench fodder' ORDER BY id LIMIT 100000;
CREATE UNIQUE INDEX ON bench.targets (n);
ANALYZE bench.targets;
CREATE OR REPLACE PROCEDURE bench.update_each(k integer) LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT id FROM bench.targets WHERE n <= k ORDER BY n LOOP
        UPDATE public.orders SET notes = 'each ' || clock_timestamp() WHERE id = r.id;
        COMMIT;
    END LOOP;
END $$;
"""
FODDER = "bench fodder"
# name: (SQL, whether it commits itself). :d and :a are a dispensary and its agent.
WORKLOADS = {
    "bulk UPDATE, 100k rows, 1 statement": (
        "UPDATE public.orders AS o SET notes = 'bulk ' || t.n FROM bench.targets AS t "
        "WHERE o.id = t.id",
        False,
    ),
    "20k single-row UPDATEs, one transaction": (
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM bench.targets WHERE n <= 20000 "
        "ORDER BY n LOOP UPDATE public.orders SET notes = 'one txn' WHERE id = r.id; "
        "END LOOP; END $$",
        False,
    ),
    "20k single-row UPDATEs, one transaction each": ("CALL bench.update_each(20000)", True),
    "20k single-row INSERTs": (
        "DO $$ DECLARE d uuid := '{d}'; a uuid := '{a}'; BEGIN FOR i IN 1..20000 LOOP "
        "INSERT INTO public.orders (dispensary_id, agent_id, total_amount) VALUES (d, a, i); "
        "END LOOP; END $$",
        False,
    ),
    "bulk INSERT, 100k rows": (
        "INSERT INTO public.orders (dispensary_id, agent_id, total_amount) "
        "SELECT '{d}', '{a}', g FROM generate_series(1, 100000) AS g",
        False,
    ),
    "bulk DELETE, 100k rows": (f"DELETE FROM public.orders WHERE notes = '{FODDER}'", False),
}

# Which of orders' triggers each design runs with.
# (Edit tracking and the update log are one trigger, orders_track_edit: they cannot be timed
# apart.)
CRM_ALL = (
    "orders_track_edit",
    "orders_forbid_hard_delete",
    "orders_log_insert",
    "orders_log_delete",
)
DESIGNS: dict[str, tuple[str, ...]] = {
    "none": (),
    "crm-schema, everything on": CRM_ALL,
    anchors.AUDIT_91PLUS.name: anchors.AUDIT_91PLUS.triggers,
    anchors.SUPA_AUDIT.name: anchors.SUPA_AUDIT.triggers,
}
# auth.uid() as Supabase defines it: SQL with no SET clause, which PostgreSQL inlines. The step
# runs with it, as production does. This package's stand-in for plain PostgreSQL (revision
# 0001) fixes its search_path, which stops the inlining; SHIM runs with that one, to show the
# difference (on PostgreSQL 15 a few microseconds a call; track_edit makes one a row).
SUPABASE_UID = """
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$"""
SHIM = "crm-schema, everything on, plain-PostgreSQL auth.uid()"
DESIGNS[SHIM] = CRM_ALL
# At least 5 rounds; BENCH_TRACKING_REPEATS, BENCH_TRACKING_DESIGNS (a ';'-separated
# subset of DESIGNS) and BENCH_TRACKING_WORKLOADS shorten a run while iterating.
TRACKING_REPEATS = int(os.environ.get("BENCH_TRACKING_REPEATS", str(max(5, REPEATS))))
# More rounds where the margins against 91plus are the smallest (the bulk UPDATE and the
# single-row workloads), 11 by default: a single run moves by up to 15 % on these 2 shared
# cores, and with 5 to 7 rounds the medians of two designs under 10 % apart could come out
# either way round (docs/benchmark-notes.md). These workloads are the short ones.
CLOSE_MARGIN = (1, 2, 3, 4)
CHOSEN = {d.strip() for d in os.environ.get("BENCH_TRACKING_DESIGNS", "").split(";") if d}
# BENCH_TRACKING_WORKLOADS: the numbers (1-6) of the workloads to run, e.g. "2,3".
PICKED = {w.strip() for w in os.environ.get("BENCH_TRACKING_WORKLOADS", "").split(",") if w}
MOONSHOT = 0.75  # the stretch goal: a quarter under 91plus


# A rolled-back run leaves its dead rows behind (heap and index entries alike), and in the
# rotation the same design always follows the same other one: each would pay for its
# predecessor's garbage. Every run starts from these tables vacuumed instead.
RESET_TABLES = (
    "public.orders",
    "public.change_log",
    "audit91.logged_actions",
    "audit.record_version",
)


def _vacuum(engine: Engine) -> None:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        present = [
            table
            for table in RESET_TABLES
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None
        ]
        conn.execute(text("VACUUM " + ", ".join(present)))


def _run_workload(
    engine: Engine,
    sql: str,
    commits: bool,
    triggers: tuple[str, ...],
    claims: str,
    uid: str = SUPABASE_UID,
) -> float:
    _vacuum(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql(uid)
        conn.commit()
        if commits:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            # Each commit's WAL flush is the same for every design and, on this shared disk,
            # moved single runs by up to a half: it is left out, and every other cost of a
            # transaction (start, commit, the triggers' per-transaction set-up) stays.
            conn.execute(text("SET synchronous_commit = off"))
        conn.execute(text("ALTER TABLE public.orders DISABLE TRIGGER USER"))
        for trigger in triggers:
            conn.execute(text(f"ALTER TABLE public.orders ENABLE TRIGGER {trigger}"))
        # Signed in, as on Supabase: auth.uid() has a JWT to read.
        conn.execute(text("SELECT set_config('request.jwt.claims', :c, false)"), {"c": claims})
        if not commits:
            conn.commit()
        elapsed = seconds(lambda: conn.execute(text(sql)))
        if not commits:
            conn.rollback()  # the same rows for every run (and _vacuum: the same pages)
        conn.execute(text("ALTER TABLE public.orders ENABLE TRIGGER USER"))
        conn.execute(text("RESET request.jwt.claims"))
        conn.execute(text("RESET synchronous_commit"))
        if not commits:
            conn.commit()
        return elapsed


def _untracked(engine: Engine, sql: str, **params: object) -> None:
    """Run ``sql`` on orders with its triggers off: bench set-up, logged by no design."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE public.orders DISABLE TRIGGER USER"))
        conn.execute(text(sql), params)
        conn.execute(text("ALTER TABLE public.orders ENABLE TRIGGER USER"))


def _delete_fodder(engine: Engine) -> None:
    """100 000 orders without lines, so the delete measures orders' triggers alone."""
    _untracked(
        engine,
        "INSERT INTO public.orders (dispensary_id, total_amount, notes) "
        "SELECT (SELECT id FROM public.dispensary_profiles ORDER BY id LIMIT 1), 0, "
        f"'{FODDER}' FROM generate_series(1, 100000)",
    )


# Every sample order has updated_by NULL (loaded with no JWT), as every row has right after
# the migration. This project's first edit of such a row fills it in, 16 bytes more; the
# anchors never do. The update workloads that roll back would repeat that first edit in every
# round, a cost a row pays once. So single-row updates in one transaction are timed on the
# rows as loaded ("first edit after the migration"); then every target row gets an
# updated_by, as a row written through the API has, and all six workloads are timed on that:
# the steady state, which the goal is judged on.
FIRST_EDIT = (2,)


def _settle(engine: Engine, who: object) -> None:
    """The target orders as a signed-in edit leaves them (triggers off: no log rows)."""
    _untracked(
        engine,
        "UPDATE public.orders AS o SET updated_by = :who FROM bench.targets AS t "
        "WHERE o.id = t.id AND o.updated_by IS NULL",
        who=who,
    )


def _rounds(
    engine: Engine,
    sql: str,
    commits: bool,
    designs: list[str],
    claims: str,
    shim: str,
    repeats: int,
) -> dict[str, list[float]]:
    """Seconds per design and round; each round runs every design once, in rotated order."""
    times: dict[str, list[float]] = {d: [] for d in designs}
    for turn in range(repeats):
        for design in designs[turn % len(designs) :] + designs[: turn % len(designs)]:
            uid = shim if design == SHIM else SUPABASE_UID
            times[design].append(_run_workload(engine, sql, commits, DESIGNS[design], claims, uid))
        print(
            f"      round {turn + 1}/{repeats}: "
            + ", ".join(f"{d} {t[-1]:.2f}s" for d, t in times.items()),
            flush=True,
        )
    return times


def _ratio(times: dict[str, list[float]], design: str) -> tuple[float, float, float]:
    """Median, lowest and highest of the design's per-round ratio to no trigger at all."""
    ratios = [a / b for a, b in zip(times[design], times["none"], strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def change_tracking(engine: Engine, results: Results) -> None:
    _delete_fodder(engine)
    with engine.begin() as conn:
        conn.execute(text(TRACKING_SETUP))
        dispensary, agent = conn.execute(
            text(
                "SELECT id, assigned_agent_id FROM public.dispensary_profiles "
                "WHERE assigned_agent_id IS NOT NULL ORDER BY id LIMIT 1"
            )
        ).one()
        # An admin signed in through the API: the only user who may hard-delete.
        admin = conn.execute(
            text("SELECT id FROM public.profiles WHERE role = 'admin' ORDER BY id LIMIT 1")
        ).scalar_one()
        claims = json.dumps({"role": "authenticated", "sub": str(admin)})
        # The database's own auth.uid(): the shim on plain PostgreSQL, put back at the end.
        shim = conn.execute(
            text("SELECT pg_get_functiondef('auth.uid()'::regprocedure)")
        ).scalar_one()
        loaded, missing = anchors.load(conn)
    for line in missing:
        results.add("change tracking", line, "")
    names = {a.name for a in loaded}
    designs = [
        d
        for d in DESIGNS
        if (d == "none" or not CHOSEN or d in CHOSEN)
        and (d.startswith(("none", "crm-schema")) or d in names)
    ]
    picked = [
        (number, workload, sql.format(d=dispensary, a=agent), commits)
        for number, (workload, (sql, commits)) in enumerate(WORKLOADS.items(), 1)
        if not PICKED or str(number) in PICKED
    ]

    def measure(number: int, workload: str, sql: str, commits: bool) -> None:
        print(f"    {workload}:", flush=True)
        repeats = TRACKING_REPEATS + 6 if number in CLOSE_MARGIN else TRACKING_REPEATS
        times = _rounds(engine, sql, commits, designs, claims, shim, repeats)
        _report(results, workload, times, designs)

    try:
        for number, workload, sql, commits in picked:
            if number in FIRST_EDIT:
                measure(number, f"{workload}, first edit after the migration", sql, commits)
        _settle(engine, agent)
        for number, workload, sql, commits in picked:
            measure(number, workload, sql, commits)
    finally:
        with engine.begin() as conn:  # the anchors and the fodder go: later steps see the CRM
            conn.exec_driver_sql(shim)
            anchors.unload(conn)
            conn.execute(text("ALTER TABLE public.orders DISABLE TRIGGER USER"))
            conn.execute(text(f"DELETE FROM public.orders WHERE notes = '{FODDER}'"))
            conn.execute(text("ALTER TABLE public.orders ENABLE TRIGGER USER"))


def _report(
    results: Results, workload: str, times: dict[str, list[float]], designs: list[str]
) -> None:
    results.add(
        "change tracking",
        f"{workload}: no trigger (median of {len(times['none'])})",
        f"{statistics.median(times['none']):.2f} s",
    )
    anchor = anchors.AUDIT_91PLUS.name
    bar = _ratio(times, anchor)[0] if anchor in designs else None
    for design in designs[1:]:
        ratio, low, high = _ratio(times, design)
        figure = f"{ratio:.2f}x ({low:.2f}-{high:.2f})"
        if design == "crm-schema, everything on" and bar is not None:
            results.add(
                "change tracking",
                f"  {design}",
                figure,
                f"<= 91plus ({bar:.2f}x); moonshot <= {bar * MOONSHOT:.2f}x",
                ratio <= bar,
            )
        else:
            results.add("change tracking", f"  {design}", figure)
    ours = "crm-schema, everything on"
    if bar is not None and ours in designs:
        # The two in the same round, side by side: the noise they share cancels out.
        paired = [a / b for a, b in zip(times[ours], times[anchor], strict=True)]
        results.add(
            "change tracking",
            "  everything on / 91plus, same round",
            f"{statistics.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})",
        )


# --- 3. RLS overhead ---------------------------------------------------------------------


# Dispensaries with an agent, by their number of orders: the biggest is the worst case the
# agent queries are measured on; the median one is what a typical agent screen shows.
BY_ORDERS = """
SELECT d.assigned_agent_id, d.id, count(*) FROM public.orders o
  JOIN public.dispensary_profiles d ON d.id = o.dispensary_id
 WHERE d.assigned_agent_id IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC, 2"""


def _subjects(conn: Connection) -> dict[str, object]:
    ranked = conn.execute(text(BY_ORDERS)).all()
    agent, dispensary, _ = ranked[0]
    typical_agent, typical_dispensary, _ = ranked[len(ranked) // 2]
    manager = scalar(conn, "SELECT id FROM public.profiles WHERE role = 'manager' LIMIT 1")
    order = scalar(
        conn, "SELECT record_id FROM public.change_log WHERE table_name = 'orders' LIMIT 1"
    ) or scalar(conn, "SELECT id FROM public.orders LIMIT 1")
    return {
        "agent": agent,
        "dispensary": dispensary,
        "typical agent": typical_agent,
        "typical_dispensary": typical_dispensary,
        "manager": manager,
        "order": order,
    }


# A dispensary's orders with their lines; {dispensary} names the bind parameter.
ORDERS_WITH_ITEMS = """
        SELECT o.id, o.order_date, i.product_id, i.quantity, i.unit_price
        FROM public.orders o JOIN public.order_items i ON i.order_id = o.id
        WHERE o.dispensary_id = :{dispensary} AND o.deleted_at IS NULL
          AND o.order_date >= current_date - 90"""
QUERIES = {
    "an agent's dispensaries": (
        "agent",
        """
        SELECT id, name, city FROM public.dispensary_profiles
        WHERE assigned_agent_id = :agent AND deleted_at IS NULL ORDER BY name""",
    ),
    "its open tasks due this week": (
        "agent",
        """
        SELECT id, title, due_date FROM public.tasks
        WHERE assigned_to = :agent AND status IN ('pending', 'in_progress')
          AND deleted_at IS NULL AND due_date <= current_date + 7 ORDER BY due_date""",
    ),
    "the biggest dispensary's orders with items, last 90 days": (
        "agent",
        ORDERS_WITH_ITEMS.format(dispensary="dispensary"),
    ),
    "a typical dispensary's orders with items, last 90 days": (
        "typical agent",
        ORDERS_WITH_ITEMS.format(dispensary="typical_dispensary"),
    ),
    "a manager's monthly revenue per agent": (
        "manager",
        """
        SELECT agent_id, date_trunc('month', order_date) AS month, sum(total_amount)
        FROM public.orders WHERE deleted_at IS NULL AND order_date >= current_date - 365
        GROUP BY 1, 2""",
    ),
    "a record's change history": (
        "manager",
        """
        SELECT operation, changed_columns, changed_at FROM public.change_log
        WHERE table_name = 'orders' AND record_id = :order ORDER BY changed_at DESC""",
    ),
    "a user's last 50 activities": (
        "agent",
        """
        SELECT activity, resource, created_at FROM public.user_activity_log
        WHERE user_id = :agent ORDER BY created_at DESC LIMIT 50""",
    ),
}
RLS_RUNS = 40


def _timed_as(
    conn: Connection, role: str, user: object, sql: str, params: dict[str, object]
) -> float:
    claims = {"role": role, **({"sub": str(user)} if role == "authenticated" else {})}
    with conn.begin():
        conn.execute(
            text("SELECT set_config('request.jwt.claims', :c, true), set_config('role', :r, true)"),
            {"c": json.dumps(claims), "r": role},
        )
        began = time.perf_counter()
        conn.execute(text(sql), params).fetchall()
        return time.perf_counter() - began


def rls_overhead(engine: Engine, results: Results) -> None:
    with engine.connect() as conn:
        subjects = _subjects(conn)
        conn.rollback()
        for name, (who, sql) in QUERIES.items():
            user = subjects[who]
            rls, plain = [], []
            for _ in range(RLS_RUNS):  # alternate, after one warm-up each
                rls.append(_timed_as(conn, "authenticated", user, sql, subjects))
                plain.append(_timed_as(conn, "service_role", None, sql, subjects))
            rls, plain = rls[1:], plain[1:]
            ratio = statistics.median(rls) / statistics.median(plain)
            p95 = percentile(rls, 0.95)
            is_agent = who.endswith("agent")
            ok = ratio <= 1.5 and (not is_agent or p95 <= 0.020)
            results.add(
                "RLS",
                f"{name} ({who}): p50 / p95 / ratio to service_role",
                f"{ms(statistics.median(rls))} / {ms(p95)} / {ratio:.2f}x",
                "<= 1.5x" + (", p95 <= 20 ms" if is_agent else ""),
                ok,
            )


# --- 4. activity logging and partition maintenance ----------------------------------------

ACTIVITY_SETUP = """
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.activity_plain;
-- Same shape: the log's columns, defaults, constraints and all four of its indexes.
CREATE TABLE bench.activity_plain (LIKE public.user_activity_log INCLUDING ALL);
CREATE OR REPLACE PROCEDURE bench.log_each(n integer, who uuid) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM public.log_user_activity(who, 'view', 'order', NULL, '{}');
        COMMIT;
    END LOOP;
END $$;
CREATE OR REPLACE PROCEDURE bench.insert_each(n integer, who uuid) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        INSERT INTO bench.activity_plain (user_id, activity, resource, metadata)
        VALUES (who, 'view', 'order', '{}');
        COMMIT;
    END LOOP;
END $$;
"""
CALLS = 5000
ONE_CALL = {
    "function": "PERFORM public.log_user_activity(who, 'view', 'order', NULL, '{}')",
    "insert": "INSERT INTO bench.activity_plain (user_id, activity, resource, metadata) "
    "VALUES (who, 'view', 'order', '{}')",
}


def pair_us(total: float) -> str:
    return f"{total / CALLS * 1e6:.1f} us"


def _in_one_transaction(engine: Engine, kind: str, who: object) -> float:
    """CALLS writes inside one rolled-back transaction: their CPU cost without commits."""
    loop = (
        f"DO $$ DECLARE who uuid := '{who}'; BEGIN FOR i IN 1..{CALLS} LOOP "
        f"{ONE_CALL[kind]}; END LOOP; END $$"
    )
    with engine.connect() as conn:
        elapsed = seconds(lambda: conn.execute(text(loop)))
        conn.rollback()
        return elapsed


def _calls_per_second(engine: Engine, procedure: str, users: list[object]) -> float:
    """One client per user, each logging for itself as a signed-in user does."""

    def run(who: object) -> None:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f"CALL bench.{procedure}(:n, :w)"), {"n": CALLS, "w": who})

    threads = [threading.Thread(target=run, args=(who,)) for who in users]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(users) * CALLS / (time.perf_counter() - began)


def activity_logging(engine: Engine, scale: float, results: Results) -> None:
    with engine.begin() as conn:
        conn.execute(text(ACTIVITY_SETUP))
        agents = list(
            conn.execute(text("SELECT id FROM public.profiles WHERE role = 'agent' LIMIT 2"))
            .scalars()
            .all()
        )
    who = agents[0]
    for clients in (1, 2):
        users = agents[:clients]
        rates = alternate(
            lambda users=users: 1 / _calls_per_second(engine, "log_each", users),
            lambda users=users: 1 / _calls_per_second(engine, "insert_each", users),
        )
        ratio = (1 / rates.a) / (1 / rates.b)
        results.add(
            "activity log",
            f"log_user_activity vs plain INSERT, {clients} client(s)",
            f"{1 / rates.a:,.0f} vs {1 / rates.b:,.0f} /s = {ratio:.2f}x",
            ">= 0.8x",
            ratio >= 0.8,
        )
    cpu = alternate(
        lambda: _in_one_transaction(engine, "function", who),
        lambda: _in_one_transaction(engine, "insert", who),
    )
    results.add(
        "activity log",
        f"  CPU per call, {CALLS:,} in one transaction (no commit): function / insert",
        f"{pair_us(cpu.a)} / {pair_us(cpu.b)} = {cpu.ratio:.2f}x",
    )
    with engine.begin() as conn:
        ensure = seconds(
            lambda: conn.execute(text("SELECT public.ensure_activity_log_partitions(23)"))
        )
        results.add("activity log", "ensure 12 more months ahead", ms(ensure))
        conn.execute(
            text(
                "SELECT public.ensure_activity_log_partitions(0, "
                "(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '7 months')::date)"
            )
        )
        rows = max(1000, round(1_000_000 * scale))
        conn.execute(
            text(
                "INSERT INTO public.user_activity_log (user_id, activity, created_at) "
                "SELECT :w, 'view', date_trunc('month', now()) - interval '7 months' "
                "+ (g % 600000) * interval '1 second' FROM generate_series(1, :n) AS g"
            ),
            {"w": who, "n": rows},
        )
    with engine.begin() as conn:
        archive = seconds(
            lambda: conn.execute(
                text("SELECT * FROM public.archive_activity_log_partitions('90 days')")
            ).all()
        )
    results.add("activity log", f"archive (detach) a month of {rows:,} rows", ms(archive))


# --- 5. a month of activity to files and back ----------------------------------------------

# Rows shaped like real traffic: most with a user, a resource, an address, a browser and a
# little metadata (what makes the file as big as it would be).
ARCHIVE_MONTH_ROWS = """
INSERT INTO public.user_activity_log
    (user_id, activity, resource, resource_id, metadata, ip_address, user_agent, created_at)
SELECT :w, (ARRAY['login', 'view', 'view', 'view', 'export']::public.activity_type[])[1 + g % 5],
       'order', gen_random_uuid(), jsonb_build_object('page', g % 40, 'ms', g % 900),
       ('10.' || g % 200 || '.' || g % 250 || '.7')::inet,
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) CRM/' || g % 9,
       (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '9 months') AT TIME ZONE 'UTC'
           + (g % 2500000) * interval '1 second'
  FROM generate_series(1, :n) AS g
"""


def archive_to_files(engine: Engine, scale: float, results: Results) -> None:
    """``partitions archive --export`` (COPY out, gzip, read back, drop) and ``restore`` of one
    month of activity (1,000,000 rows at scale 1)."""
    rows = max(1000, round(1_000_000 * scale))
    with engine.begin() as conn:
        who = conn.execute(text("SELECT id FROM public.profiles LIMIT 1")).scalar_one()
        conn.execute(
            text(
                "SELECT public.ensure_activity_log_partitions(0, "
                "(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '9 months')::date)"
            )
        )
        conn.execute(text(ARCHIVE_MONTH_ROWS), {"w": who, "n": rows})
    with (
        tempfile.TemporaryDirectory(prefix="crm-bench-archive-") as folder,
        engine.connect() as conn,
    ):
        directory = Path(folder)
        began = time.perf_counter()
        report = partitions.archive_to_files(conn, "90 days", directory, dry_run=False)
        export = time.perf_counter() - began
        if report.failures:
            raise RuntimeError(f"archive to files failed: {report.failures}")
        (manifest,) = directory.glob("*.json")
        size = archive_files.data_path(directory, manifest.stem).stat().st_size
        results.add(
            "activity log",
            f"export a month of {rows:,} rows (COPY, gzip, verify, drop)",
            ms(export),
        )
        results.add(
            "activity log",
            "  archive file size (csv.gz)",
            f"{size / 1e6:,.1f} MB = {size / rows:.0f} B/row",
        )
        began = time.perf_counter()
        report = partitions.restore(conn, manifest)
        restore = time.perf_counter() - began
        if report.failures:
            raise RuntimeError(f"restore failed: {report.failures}")
        results.add("activity log", f"restore it (checksum, COPY in, {rows:,} rows)", ms(restore))


# --- 6. storage --------------------------------------------------------------------------

DAY_OF_TRAFFIC = """
UPDATE public.orders SET notes = 'day ' || id WHERE id IN
    (SELECT id FROM public.orders ORDER BY md5(id::text) LIMIT (:orders / 200));
UPDATE public.tasks SET status = 'completed', completed_at = now() WHERE id IN
    (SELECT id FROM public.tasks WHERE status = 'pending' LIMIT (:orders / 500));
INSERT INTO public.communications (dispensary_id, agent_id, type, subject)
    SELECT id, assigned_agent_id, 'call', 'Check-in' FROM public.dispensary_profiles
    ORDER BY md5(id::text) LIMIT (:orders / 500);
SELECT count(public.log_user_activity(p.id, 'login', 'system', NULL, '{}'))
    FROM public.profiles p, generate_series(1, 20);
"""
SIZES = """
SELECT (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(:base)),
       pg_total_relation_size('public.change_log'),
       (SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i
         WHERE i.inhparent = 'public.user_activity_log'::regclass),
       (SELECT count(*) FROM public.change_log),
       (SELECT count(*) FROM public.user_activity_log)
"""


def storage(engine: Engine, results: Results) -> None:
    with engine.begin() as conn:
        orders = int(scalar(conn, "SELECT count(*) FROM public.orders") or 0)
        for statement in filter(str.strip, DAY_OF_TRAFFIC.split(";\n")):
            conn.execute(text(statement), {"orders": orders})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("ANALYZE"))
        base, change, activity, changes, activities = conn.execute(
            text(SIZES), {"base": list(CRM_TABLES)}
        ).one()
    results.add(
        "storage", "bytes per change_log row (with indexes)", f"{change / max(changes, 1):,.0f} B"
    )
    results.add(
        "storage",
        "bytes per activity row (with indexes)",
        f"{activity / max(activities, 1):,.0f} B",
    )
    share = (change + activity) / base
    results.add(
        "storage",
        "audit tables as a share of the base tables",
        f"{share:.1%}",
        "seed: +15-25%",
        share <= 0.25,
    )
