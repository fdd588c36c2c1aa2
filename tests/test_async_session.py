"""The async sessions: same RLS identity as the sync ones, on an AsyncEngine with psycopg's
async driver, and a pooled connection never carries one user's identity to the next checkout.

No pytest plugin: each test runs its coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_schema.errors import AccessDenied, ConcurrentEdit
from crm_schema.models import DispensaryProfile, Order, Product
from crm_schema.session import (
    app_engine,
    async_app_engine,
    async_service_session,
    async_user_session,
)
from tests import sample_data as s

WHO = text(
    "SELECT auth.uid(), current_user, current_setting('request.jwt.claims', true), pg_backend_pid()"
)


@pytest.fixture
def loaded(db_url: URL) -> URL:
    engine = app_engine(db_url)
    with engine.begin() as connection:
        s.load(connection)
    engine.dispose()
    return db_url


def _one_connection(url: URL) -> AsyncEngine:
    engine = async_app_engine(url, pool_size=1, max_overflow=0)
    assert type(engine.dialect).__name__ == "PGDialectAsync_psycopg"
    return engine


def test_async_user_sessions_meet_rls(loaded: URL) -> None:
    async def scenario() -> tuple[list[uuid.UUID], list[uuid.UUID], int]:
        engine = _one_connection(loaded)
        try:
            async with async_user_session(engine, s.AGENT_A) as session:
                mine = list((await session.scalars(select(DispensaryProfile.id))).all())
            async with async_user_session(engine, s.AGENT_B) as session:
                theirs = list((await session.scalars(select(DispensaryProfile.id))).all())
            async with async_service_session(engine) as session:
                every = len((await session.scalars(select(DispensaryProfile.id))).all())
        finally:
            await engine.dispose()
        return mine, theirs, every

    mine, theirs, every = asyncio.run(scenario())
    assert mine == [s.DISPENSARY_A]
    assert theirs == [s.DISPENSARY_B]
    assert every == 3


def test_a_pooled_connection_never_carries_an_identity_on(loaded: URL) -> None:
    async def scenario() -> list[tuple[object, ...]]:
        engine = _one_connection(loaded)
        seen = []
        try:
            async with async_user_session(engine, s.AGENT_A) as session:
                seen.append(tuple((await session.execute(WHO)).one()))
                await session.commit()
                # A new transaction in the same session applies the identity again.
                seen.append(tuple((await session.execute(WHO)).one()))
            async with async_service_session(engine) as session:
                seen.append(tuple((await session.execute(WHO)).one()))
            async with async_user_session(engine, s.AGENT_B) as session:
                seen.append(tuple((await session.execute(WHO)).one()))
                await session.rollback()
            async with engine.connect() as plain:  # the next checkout, no identity asked for
                seen.append(tuple((await plain.execute(WHO)).one()))
        finally:
            await engine.dispose()
        return seen

    a, a_again, service, b, plain = asyncio.run(scenario())
    assert len({row[3] for row in (a, a_again, service, b, plain)}) == 1  # one connection
    assert a[:2] == a_again[:2] == (s.AGENT_A, "authenticated")
    assert service[:2] == (None, "service_role")
    assert b[:2] == (s.AGENT_B, "authenticated")
    assert plain[0] is None
    assert plain[1] == "postgres"
    assert plain[2] in (None, "")  # transaction-local: gone with the transaction


def test_async_sessions_raise_the_same_errors(loaded: URL) -> None:
    async def scenario() -> tuple[BaseException, BaseException]:
        engine = async_app_engine(loaded, pool_size=2, max_overflow=0)
        try:
            async with async_user_session(engine, s.AGENT_A) as session:
                product = await session.get(Product, s.PRODUCT_FLOWER)
                assert product is not None
                product.name = "Renamed"
                with pytest.raises(AccessDenied) as denied:
                    await session.commit()
            async with (
                async_user_session(engine, s.AGENT_A) as first,
                async_user_session(engine, s.AGENT_A) as second,
            ):
                mine = await first.get(Order, s.ORDER_A)
                stale = await second.get(Order, s.ORDER_A)
                assert mine is not None
                assert stale is not None
                mine.notes = "first"
                await first.commit()
                stale.notes = "second"
                with pytest.raises(ConcurrentEdit) as conflict:
                    await second.commit()
        finally:
            await engine.dispose()
        return denied.value, conflict.value

    denied, conflict = asyncio.run(scenario())
    assert isinstance(denied, AccessDenied)
    assert (denied.table, denied.row_id) == ("products", s.PRODUCT_FLOWER)
    assert isinstance(conflict, ConcurrentEdit)
    assert (conflict.table, conflict.row_id) == ("orders", s.ORDER_A)
