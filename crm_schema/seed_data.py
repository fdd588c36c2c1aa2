"""A realistic Oklahoma cannabis CRM at scale factor S, generated set-based in the database.

S = 1 is 500 users, 50 000 dispensaries, 5 000 products, 1 000 000 orders, about 3 000 000
order lines, 500 000 communications and 300 000 tasks; every count scales with S. The data is
skewed the way real data is: a few big dispensaries place most orders (a power law over
dispensary numbers), and most orders are recent.

Every "random" value is derived from an md5 hash of (seed, purpose, row number), so the same
seed and anchor date give the same data on any server and any plan. Only baseline columns are
written, so it works at any revision (later revisions' triggers simply fire). It refuses to
mix into a database whose CRM tables already hold rows.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, text

from crm_schema.runbook.baseline import CRM_TABLES

# (city, county) pairs: where Oklahoma's dispensaries are.
PLACES = (
    ("Oklahoma City", "Oklahoma"),
    ("Tulsa", "Tulsa"),
    ("Norman", "Cleveland"),
    ("Broken Arrow", "Tulsa"),
    ("Edmond", "Oklahoma"),
    ("Lawton", "Comanche"),
    ("Moore", "Cleveland"),
    ("Midwest City", "Oklahoma"),
    ("Enid", "Garfield"),
    ("Stillwater", "Payne"),
    ("Owasso", "Tulsa"),
    ("Muskogee", "Muskogee"),
    ("Shawnee", "Pottawatomie"),
    ("Ardmore", "Carter"),
    ("Ponca City", "Kay"),
    ("Bartlesville", "Washington"),
    ("Tahlequah", "Cherokee"),
    ("Durant", "Bryan"),
    ("Woodward", "Woodward"),
    ("McAlester", "Pittsburg"),
)
CATEGORIES = (
    "flower",
    "flower",
    "flower",
    "pre_roll",
    "vape",
    "vape",
    "concentrate",
    "edible",
    "edible",
    "beverage",
    "topical",
    "tincture",
    "capsule",
    "accessory",
)


@dataclass(frozen=True)
class Counts:
    users: int
    dispensaries: int
    products: int
    orders: int
    order_items: int
    communications: int
    tasks: int


def counts_for(scale: float) -> Counts:
    """Row counts at scale ``scale`` (order lines are about three per order)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")

    def n(base: int, least: int) -> int:
        return max(least, round(base * scale))

    orders = n(1_000_000, 20)
    return Counts(
        n(500, 6), n(50_000, 10), n(5_000, 10), orders, 3 * orders, n(500_000, 10), n(300_000, 10)
    )


def _rnd(salt: str, index: str) -> str:
    """SQL for a value in [0, 1) derived from the seed, a purpose and a row number."""
    return (
        f"(('x' || substr(md5(:seed || ':{salt}:' || {index}), 1, 8))::bit(32)::bigint"
        " / 4294967296.0)"
    )


def _uuid(kind: str, index: str) -> str:
    return f"md5(:seed || ':{kind}:' || {index})::uuid"


def _pick(options: tuple[str, ...], salt: str, index: str) -> str:
    array = "ARRAY[" + ", ".join(f"'{o}'" for o in options) + "]"
    return f"({array})[1 + floor({_rnd(salt, index)} * {len(options)})::int]"


USERS = f"""
-- The e-mails come after the profiles: one would make the sign-up trigger (0006) create an
-- agent's profile for each user.
INSERT INTO auth.users (id)
SELECT {_uuid("user", "g")} FROM generate_series(1, :users) AS g ORDER BY g;
INSERT INTO public.profiles (id, email, full_name, role, territory, created_at)
SELECT {_uuid("user", "g")}, 'user' || g || '@okcrm.example',
       'CRM User ' || g,
       (CASE WHEN g <= greatest(1, :users / 100) THEN 'admin'
             WHEN g <= greatest(2, :users / 10) THEN 'manager' ELSE 'agent' END)::public.user_role,
       {_pick(tuple(p[0] for p in PLACES[:6]), "territory", "g")} || ' metro',
       CAST(:anchor AS timestamptz) - interval '3 years'
  FROM generate_series(1, :users) AS g ORDER BY g;
UPDATE auth.users AS u SET email = p.email FROM public.profiles AS p WHERE p.id = u.id;
"""

# Agents are the users numbered above the managers; map a number in [0, 1) onto them.
AGENT_FIRST = "(greatest(2, :users / 10) + 1)"
AGENT_COUNT = f"(:users - {AGENT_FIRST} + 1)"


def _agent(salt: str, index: str) -> str:
    return _uuid("user", f"({AGENT_FIRST} + floor({_rnd(salt, index)} * {AGENT_COUNT})::int)")


DISPENSARIES = f"""
INSERT INTO public.dispensary_profiles
    (id, name, license_number, license_status, license_expires_on, status, city, county,
     postal_code, assigned_agent_id, created_at)
SELECT {_uuid("dispensary", "g")},
       {
    _pick(
        (
            "Red Dirt",
            "Prairie",
            "Sooner",
            "Route 66",
            "Green Country",
            "Okie",
            "Twister",
            "Redbud",
            "Cimarron",
            "Osage",
        ),
        "name",
        "g",
    )
} || ' '
           || {
    _pick(
        ("Remedies", "Cannabis Co.", "Dispensary", "Wellness", "Leaf", "Botanicals"), "suffix", "g"
    )
} || ' #' || g,
       'DAAA-' || upper(substr(lpad(to_hex(g), 8, '0'), 1, 4)) || '-'
           || upper(substr(lpad(to_hex(g), 8, '0'), 5, 4)),
       CASE WHEN {
    _rnd("licence", "g")
} < 0.93 THEN 'active' ELSE 'expired' END::public.license_status,
       :anchor + (floor({_rnd("expiry", "g")} * 700) - 200)::int,
       CASE WHEN {_rnd("status", "g")} < 0.8 THEN 'active'
            WHEN {_rnd("status", "g")} < 0.95 THEN 'prospect' ELSE 'inactive' END
           ::public.dispensary_status,
       place[1], place[2], lpad((73000 + floor({_rnd("zip", "g")} * 1999))::int::text, 5, '0'),
       CASE WHEN {_rnd("assigned", "g")} < 0.9 THEN {_agent("agent", "g")} END,
       CAST(:anchor AS timestamptz) - interval '2 years'
  FROM generate_series(1, :dispensaries) AS g,
       LATERAL (SELECT {_pick(tuple(f"{c}|{k}" for c, k in PLACES), "place", "g")}) AS p(pair),
       LATERAL (SELECT string_to_array(p.pair, '|')) AS s(place)
 ORDER BY g;
"""

PRODUCTS = f"""
INSERT INTO public.products
    (id, name, sku, category, strain_type, brand, thc_percent, cbd_percent, unit_size,
     unit_price, created_at)
SELECT {_uuid("product", "g")},
       {
    _pick(
        (
            "Okie Kush",
            "Sooner Sativa",
            "Red River OG",
            "Thunder Haze",
            "Wichita Widow",
            "Prairie Fire",
            "Tornado Alley",
            "Cherokee Gold",
        ),
        "strain",
        "g",
    )
} || ' ' || cat,
       'OK-' || upper(left(cat, 2)) || '-' || lpad(g::text, 6, '0'),
       cat::public.product_category,
       {_pick(("indica", "sativa", "hybrid", "hybrid", "cbd"), "type", "g")}::public.strain_type,
       {_pick(("Cake", "Okie Grown", "Red Dirt Labs", "Sooner Farms"), "brand", "g")},
       round((12 + {_rnd("thc", "g")} * 78)::numeric, 2),
       round(({_rnd("cbd", "g")} * 5)::numeric, 2),
       CASE cat WHEN 'flower' THEN '3.5g' WHEN 'vape' THEN '1g cart' ELSE 'each' END,
       round((4 + {_rnd("price", "g")} * 56)::numeric, 2),
       CAST(:anchor AS timestamptz) - interval '2 years'
  FROM generate_series(1, :products) AS g,
       LATERAL (SELECT {_pick(CATEGORIES, "category", "g")}) AS c(cat)
 ORDER BY g;
"""


def _skewed(kind: str, salt: str, index: str, count: str, power: int) -> str:
    """The id of row 1..count of ``kind``, low numbers far more likely (a power law)."""
    number = f"(1 + floor(power({_rnd(salt, index)}, {power}) * {count})::int)"
    return _uuid(kind, number)


BIG_DISPENSARY = _skewed("dispensary", "dispensary", "g", ":dispensaries", 3)


def _frac(hash_sql: str, part: int) -> str:
    """A value in [0, 1) from the part-th 8 hex digits of an md5: four draws for one hash."""
    return f"(('x' || substr({hash_sql}, {1 + 8 * (part - 1)}, 8))::bit(32)::bigint / 4294967296.0)"


LINE_PRODUCT = _uuid("product", f"(1 + floor(power({_frac('l.h', 1)}, 2) * :products)::int)")
ORDER_DISPENSARY = _uuid(
    "dispensary", f"(1 + floor(power({_frac('h', 2)}, 3) * :dispensaries)::int)"
)
ORDER_AGENT = _uuid("user", f"({AGENT_FIRST} + floor({_frac('h', 4)} * {AGENT_COUNT})::int)")

# Order lines are drawn once, into a temporary table that both the orders' totals and the
# order_items rows come from. Order o has 1 to 5 lines (3 on average); one md5 per line
# gives its id, its product (popularity follows a power law) and its quantity.
ORDERS = f"""
CREATE TEMPORARY TABLE seed_order_lines ON COMMIT DROP AS
SELECT l.o, l.line, l.h, p.id AS product_id, p.unit_price,
       (1 + floor({_frac("l.h", 2)} * 24))::int AS quantity
  FROM (SELECT o, line, md5(:seed || ':item:' || o || '.' || line) AS h
          FROM generate_series(1, :orders) AS o,
               generate_series(1, 1 + floor({_rnd("lines", "o")} * 5)::int) AS line) AS l
  JOIN public.products AS p ON p.id = {LINE_PRODUCT};
ANALYZE seed_order_lines;
INSERT INTO public.orders
    (id, dispensary_id, agent_id, status, order_date, total_amount, created_at)
SELECT h::uuid, d.id, coalesce(d.assigned_agent_id, {ORDER_AGENT}),
       (CASE WHEN day > :anchor - 7 THEN 'submitted' WHEN day > :anchor - 21 THEN 'confirmed'
             WHEN {_frac("h", 3)} < 0.04 THEN 'cancelled' ELSE 'delivered' END)
           ::public.order_status,
       day, coalesce(t.total, 0), day::timestamptz
  FROM generate_series(1, :orders) AS n
  CROSS JOIN LATERAL (SELECT md5(:seed || ':order:' || n) AS h) AS x
  CROSS JOIN LATERAL (SELECT (:anchor - floor(power({_frac("h", 1)}, 2) * 730)::int) AS day)
       AS a
  JOIN public.dispensary_profiles AS d ON d.id = {ORDER_DISPENSARY}
  LEFT JOIN (SELECT o, sum(quantity * unit_price) AS total FROM seed_order_lines GROUP BY o)
       AS t ON t.o = n
 ORDER BY n;
"""

ORDER_ITEMS = """
INSERT INTO public.order_items (id, order_id, product_id, quantity, unit_price, created_at)
SELECT l.h::uuid, md5(:seed || ':order:' || l.o)::uuid, l.product_id, l.quantity,
       l.unit_price, CAST(:anchor AS timestamptz)
  FROM seed_order_lines AS l
 ORDER BY l.o, l.line;
"""

COMMUNICATIONS = f"""
INSERT INTO public.communications
    (id, dispensary_id, agent_id, type, subject, occurred_at, created_at)
SELECT {_uuid("communication", "g")}, d.id, coalesce(d.assigned_agent_id, {
    _agent("comm_agent", "g")
}),
       {_pick(("call", "call", "email", "text", "meeting", "site_visit", "note"), "kind", "g")}
           ::public.communication_type,
       {
    _pick(
        (
            "Reorder check-in",
            "New menu",
            "Licence renewal",
            "Delivery window",
            "Price sheet",
            "Quarterly review",
        ),
        "subject",
        "g",
    )
},
       at, at
  FROM generate_series(1, :communications) AS g
  CROSS JOIN LATERAL (SELECT CAST(:anchor AS timestamptz)
                             - floor(power({_rnd("when", "g")}, 2) * 730 * 24)::int
                               * interval '1 hour') AS w(at)
  JOIN public.dispensary_profiles AS d
    ON d.id = {BIG_DISPENSARY}
 ORDER BY g;
"""

TASKS = f"""
INSERT INTO public.tasks
    (id, title, assigned_to, created_by, dispensary_id, status, priority, due_date,
     completed_at, created_at)
SELECT {_uuid("task", "g")},
       {
    _pick(
        (
            "Send updated menu",
            "Follow up on order",
            "Schedule site visit",
            "Collect licence copy",
            "Sample drop-off",
        ),
        "title",
        "g",
    )
},
       agent, agent, d.id,
       (CASE WHEN due < :anchor AND {_rnd("done", "g")} < 0.9 THEN 'completed'
             WHEN due < :anchor THEN 'cancelled'
             WHEN {_rnd("started", "g")} < 0.3 THEN 'in_progress' ELSE 'pending' END)
           ::public.task_status,
       {
    _pick(("low", "medium", "medium", "high", "urgent"), "priority", "g")
}::public.task_priority,
       due, CASE WHEN due < :anchor THEN due::timestamptz END, (due - 14)::timestamptz
  FROM generate_series(1, :tasks) AS g
  CROSS JOIN LATERAL (SELECT :anchor - 365 + floor({_rnd("due", "g")} * 400)::int) AS x(due)
  JOIN public.dispensary_profiles AS d
    ON d.id = {BIG_DISPENSARY}
  CROSS JOIN LATERAL (SELECT coalesce(d.assigned_agent_id, {_agent("task_agent", "g")})) AS a(agent)
 ORDER BY g;
"""

STEPS = (
    ("profiles", USERS),
    ("dispensary_profiles", DISPENSARIES),
    ("products", PRODUCTS),
    ("orders", ORDERS),
    ("order_items", ORDER_ITEMS),
    ("communications", COMMUNICATIONS),
    ("tasks", TASKS),
)


def _refuse_non_empty(connection: Connection) -> None:
    filled = [
        table
        for table in CRM_TABLES
        if connection.execute(text(f"SELECT EXISTS (SELECT 1 FROM public.{table})")).scalar()
    ]
    if filled:
        raise ValueError(
            "refusing to generate into a database that already has CRM data "
            f"(rows in {', '.join(filled)}): use an empty, migrated database"
        )


def generate(
    connection: Connection,
    scale: float,
    seed: int = 42,
    progress: Callable[[str, int, float], None] | None = None,
    anchor: dt.date | None = None,
) -> Counts:
    """Fill the CRM tables at ``scale``; dates count back from ``anchor`` (default today).

    Commits when done. ``progress(table, rows, seconds)`` is called after each table.
    """
    counts = counts_for(scale)
    _refuse_non_empty(connection)
    params = {
        "seed": str(seed),
        "anchor": anchor or dt.date.today(),
        "users": counts.users,
        "dispensaries": counts.dispensaries,
        "products": counts.products,
        "orders": counts.orders,
        "communications": counts.communications,
        "tasks": counts.tasks,
    }
    # Bulk load: no need to wait for each commit to reach the disk.
    connection.execute(text("SET LOCAL synchronous_commit = off"))
    rows: dict[str, int] = {}
    for table, sql in STEPS:
        began = time.perf_counter()
        for statement in filter(str.strip, sql.split(";\n")):
            result = connection.execute(text(statement), params)
        rows[table] = result.rowcount
        if progress is not None:
            progress(table, rows[table], time.perf_counter() - began)
    connection.commit()
    for table in CRM_TABLES:  # fresh statistics, or the planner guesses on a million rows
        connection.execute(text(f"ANALYZE public.{table}"))
    connection.commit()
    return Counts(
        rows["profiles"],
        rows["dispensary_profiles"],
        rows["products"],
        rows["orders"],
        rows["order_items"],
        rows["communications"],
        rows["tasks"],
    )
