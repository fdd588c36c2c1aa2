"""The read-only models of revision 0007's five views: they match the migrated views column
by column, read through RLS like the tables, refuse every write in Python, and stay out of
autogenerate's way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, delete, insert, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from crm_schema.enums import PermissionType, ResourceType, UserRole
from crm_schema.models import (
    VIEW_MODELS,
    ActiveProfile,
    DispensarySummary,
    ReadOnlyView,
    RecordChangeHistory,
    UserEffectivePermission,
    include_name,
    metadata,
)
from crm_schema.session import app_engine, service_session, user_session
from tests import sample_data as s

VIEW_COLUMNS = text(
    """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute AS a
    WHERE a.attrelid = CAST(:view AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
    """
)


@pytest.mark.parametrize("model", VIEW_MODELS, ids=lambda m: m.__tablename__)
def test_each_view_model_has_the_views_columns(conn: Connection, model: type) -> None:
    table = model.__table__  # type: ignore[attr-defined]
    in_db = [tuple(row) for row in conn.execute(VIEW_COLUMNS, {"view": f"public.{table.name}"})]
    in_model = [(c.name, c.type.compile(dialect=conn.dialect).lower()) for c in table.columns]
    assert in_model == in_db


def test_the_five_views_and_only_they(conn: Connection) -> None:
    views = conn.execute(
        text(
            "SELECT relname FROM pg_class "
            "WHERE relkind = 'v' AND relnamespace = 'public'::regnamespace"
        )
    ).scalars()
    assert set(views) == {m.__tablename__ for m in VIEW_MODELS}
    # Not tables to autogenerate: off the models' MetaData, and filtered if reflected.
    assert not set(metadata.tables) & set(views)
    assert not any(include_name(m.__tablename__, "table", {}) for m in VIEW_MODELS)


@pytest.fixture
def app(db_url: URL) -> Iterator[Engine]:
    engine = app_engine(db_url)
    with engine.begin() as connection:
        s.load(connection)
    yield engine
    engine.dispose()


def test_views_read_through_the_callers_rls(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session:
        summary = session.scalars(select(DispensarySummary)).all()
        mine = session.get(
            UserEffectivePermission, (s.AGENT_A, PermissionType.READ, ResourceType.ORDER)
        )
        others = session.scalars(
            select(UserEffectivePermission).where(UserEffectivePermission.user_id == s.AGENT_B)
        ).all()
        me = session.get(ActiveProfile, s.AGENT_A)
    assert [(d.id, d.order_count) for d in summary] == [(s.DISPENSARY_A, 1)]
    assert mine is not None
    assert (mine.allowed, mine.source) == (True, "role default")
    assert others == []  # an agent may not read other people's permissions
    assert me is not None
    assert me.role is UserRole.AGENT


def test_every_write_through_a_view_is_refused(app: Engine) -> None:
    with service_session(app) as session:  # even where the database itself would allow it
        profile = session.get(ActiveProfile, s.AGENT_A)
        assert profile is not None
        profile.full_name = "Renamed"
        with pytest.raises(ReadOnlyView, match="active_profiles is a read-only view"):
            session.flush()
        session.rollback()
        session.add(ActiveProfile(id=s.AGENT_A, email="x@example.com"))
        with pytest.raises(ReadOnlyView, match="adding a row to"):
            session.flush()
        session.rollback()
        history = session.scalars(select(RecordChangeHistory)).first()
        assert history is not None
        session.delete(history)
        with pytest.raises(ReadOnlyView, match="deleting a row of"):
            session.flush()
        session.rollback()
        for statement in (
            update(ActiveProfile).values(full_name="Renamed"),
            insert(ActiveProfile).values(id=s.AGENT_A, email="x@example.com"),
            delete(ActiveProfile),
        ):
            with pytest.raises(ReadOnlyView, match="an INSERT, UPDATE or DELETE on"):
                session.execute(statement)
            session.rollback()
    with Session(app) as plain:
        names = plain.execute(
            text("SELECT full_name FROM profiles WHERE id = :a"), {"a": s.AGENT_A}
        )
        assert names.scalar() != "Renamed"
