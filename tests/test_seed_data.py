"""The sample-data generator: counts, determinism, integrity, skew, and refusing bad input."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from crm_schema import migrations, seed_data

SCALE = 0.002
ANCHOR = dt.date(2026, 11, 1)
# Baseline columns only, timestamps the triggers set excluded: what the seed determines.
CHECKSUM = """
SELECT md5(string_agg(row_text, '|' ORDER BY row_text)) FROM (
    SELECT (to_jsonb(t) - 'updated_at')::text AS row_text FROM public.{table} AS t) AS rows
"""


def _baseline_engine(url: URL, make_engine: Any) -> Engine:
    command.upgrade(migrations.make_config(url), migrations.BASELINE_REVISION)
    engine: Engine = make_engine(url)
    return engine


def _checksums(connection: Connection) -> dict[str, str]:
    return {
        table: str(connection.execute(text(CHECKSUM.format(table=table))).scalar())
        for table in seed_data.CRM_TABLES
    }


def test_counts_and_integrity(conn: Connection) -> None:
    counts = seed_data.generate(conn, SCALE, anchor=ANCHOR)
    expected = seed_data.counts_for(SCALE)
    assert counts.orders == expected.orders == 2000
    assert counts.dispensaries == expected.dispensaries == 100
    assert 0.8 * expected.order_items < counts.order_items < 1.2 * expected.order_items
    for table, rows in (("orders", counts.orders), ("tasks", counts.tasks)):
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == rows
    wrong_totals = conn.execute(
        text(
            "SELECT count(*) FROM orders o WHERE total_amount <> (SELECT coalesce(sum(quantity * "
            "unit_price), 0) FROM order_items i WHERE i.order_id = o.id)"
        )
    ).scalar()
    assert wrong_totals == 0
    bad_licences = conn.execute(
        text(
            "SELECT count(*) FROM dispensary_profiles "
            "WHERE license_number !~ '^[A-Z]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$'"
        )
    ).scalar()
    assert bad_licences == 0  # and uniqueness is enforced by the table's constraint


def test_orders_are_skewed_like_real_data(conn: Connection) -> None:
    seed_data.generate(conn, 0.01, anchor=ANCHOR)
    top_share = conn.execute(
        text(
            "WITH per AS (SELECT count(*) AS n FROM orders GROUP BY dispensary_id), "
            "ranked AS (SELECT n, row_number() OVER (ORDER BY n DESC) AS rank FROM per) "
            "SELECT sum(n) FILTER (WHERE rank <= 5)::numeric / sum(n) FROM ranked"
        )
    ).scalar()
    assert top_share > 0.1  # the top 1% of 500 dispensaries: over 10x their share
    recent = conn.execute(
        text("SELECT avg((order_date > CAST(:a AS date) - 180)::int) FROM orders"), {"a": ANCHOR}
    ).scalar()
    assert recent > 0.4  # 180 of 730 days hold far more than a quarter of the orders


def test_same_seed_same_data_other_seed_other_data(pg_server: Any, make_engine: Any) -> None:
    from tests.conftest import new_db_name

    sums = []
    for seed in (7, 7, 8):
        name = new_db_name()
        with pg_server.janitor(name):
            engine = _baseline_engine(pg_server.url(name), make_engine)
            with engine.connect() as connection:
                seed_data.generate(connection, SCALE, seed=seed, anchor=ANCHOR)
                sums.append(_checksums(connection))
            engine.dispose()
    assert sums[0] == sums[1]
    assert all(sums[0][t] != sums[2][t] for t in seed_data.CRM_TABLES)


def test_refuses_bad_scale_and_existing_data(conn: Connection) -> None:
    with pytest.raises(ValueError, match="scale must be positive"):
        seed_data.generate(conn, 0)
    seed_data.generate(conn, SCALE, anchor=ANCHOR)
    with pytest.raises(ValueError, match="already has CRM data"):
        seed_data.generate(conn, SCALE)
