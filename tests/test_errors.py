"""What an app sees when the database says no: crm_schema.errors from the sessions, each with
the table and the row id, instead of StaleDataError for everything or a raw DBAPIError."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, pool, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm.exc import StaleDataError

from crm_schema import permissions
from crm_schema.enums import PermissionType, ResourceType, UserRole
from crm_schema.errors import AccessDenied, ConcurrentEdit, NotFound
from crm_schema.models import DispensaryProfile, Order, Product, Profile, soft_delete
from crm_schema.session import app_engine, service_session, user_session
from tests import sample_data as s


@pytest.fixture
def app(db_url: URL) -> Iterator[Engine]:
    engine = app_engine(db_url, poolclass=pool.QueuePool, pool_size=2, max_overflow=0)
    with engine.begin() as connection:
        s.load(connection)
    yield engine
    engine.dispose()


def test_an_update_rls_filters_out_is_access_denied_not_stale(app: Engine) -> None:
    # Agents may read products but not change them: the UPDATE matches no row.
    with user_session(app, s.AGENT_A) as session:
        product = session.get(Product, s.PRODUCT_FLOWER)
        assert product is not None
        product.unit_price = product.unit_price / 2
        with pytest.raises(AccessDenied) as refused:
            session.commit()
    assert (refused.value.table, refused.value.row_id) == ("products", s.PRODUCT_FLOWER)
    assert not isinstance(refused.value, StaleDataError)
    with service_session(app) as session:
        assert session.get(Product, s.PRODUCT_FLOWER).version == 1  # type: ignore[union-attr]


def test_a_real_version_conflict_is_concurrent_edit(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as first, user_session(app, s.AGENT_A) as second:
        mine = first.get(Order, s.ORDER_A)
        stale = second.get(Order, s.ORDER_A)
        assert mine is not None
        assert stale is not None
        mine.notes = "Call before delivery"
        first.commit()
        stale.notes = "A conflicting edit"
        with pytest.raises(ConcurrentEdit) as conflict:
            second.commit()
    assert (conflict.value.table, conflict.value.row_id) == ("orders", s.ORDER_A)
    assert isinstance(conflict.value, StaleDataError)  # code written for SQLAlchemy still works
    assert "version 1 read, now 2" in str(conflict.value)


def test_a_row_gone_from_view_is_not_found(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as agent:
        order = agent.get(Order, s.ORDER_A)
        assert order is not None
        with user_session(app, s.ADMIN) as admin:  # meanwhile an admin soft-deletes it
            soft_delete(admin, admin.get(Order, s.ORDER_A))  # type: ignore[arg-type]
            admin.commit()
        order.notes = "Too late"
        with pytest.raises(NotFound) as gone:
            agent.commit()
    assert (gone.value.table, gone.value.row_id) == ("orders", s.ORDER_A)


def test_a_with_check_failure_is_access_denied_with_the_row(app: Engine) -> None:
    # Handing one's dispensary to another agent moves it out of one's own scope.
    with user_session(app, s.AGENT_A) as session:
        dispensary = session.get(DispensaryProfile, s.DISPENSARY_A)
        assert dispensary is not None
        dispensary.assigned_agent_id = s.AGENT_B
        with pytest.raises(AccessDenied, match="row-level security") as refused:
            session.flush()
    assert (refused.value.table, refused.value.row_id) == ("dispensary_profiles", s.DISPENSARY_A)


def test_a_guard_trigger_is_access_denied(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session:  # promoting oneself
        agent = session.get(Profile, s.AGENT_A)
        assert agent is not None
        agent.role = UserRole.ADMIN
        with pytest.raises(AccessDenied, match="only an admin can change role") as refused:
            session.commit()
    assert (refused.value.table, refused.value.row_id) == ("profiles", s.AGENT_A)


def test_a_refused_hard_delete_is_access_denied(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session:
        order = session.get(Order, s.ORDER_A)
        session.delete(order)
        with pytest.raises(AccessDenied) as refused:
            session.flush()
    assert (refused.value.table, refused.value.row_id) == ("orders", s.ORDER_A)


def test_core_statements_are_translated_too(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session, pytest.raises(AccessDenied) as refused:
        permissions.grant(session, s.AGENT_A, PermissionType.MANAGE, ResourceType.SYSTEM)
    assert refused.value.table == "user_permissions"
    assert refused.value.row_id is None  # the database refused it before it had an id


def test_a_hidden_row_reads_as_none_or_not_found(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session:
        assert session.get(Order, s.ORDER_B) is None  # agent B's order
        assert session.scalars(select(Order).where(Order.id == s.ORDER_B)).first() is None


def test_plain_connections_on_the_same_engine_keep_driver_errors(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session:
        session.execute(select(Order.id)).all()
    with app.connect() as plain, pytest.raises(DBAPIError):
        plain.execute(
            text(
                "SET LOCAL ROLE authenticated; "
                "SELECT public.log_user_activity(NULL, 'login', 'system', NULL, '{}')"
            )
        )


def test_a_session_on_a_connection_explains_too(app: Engine) -> None:
    with app.connect() as connection:
        with user_session(connection, s.AGENT_A) as session:
            product = session.get(Product, s.PRODUCT_VAPE)
            assert product is not None
            product.name = "Renamed"
            with pytest.raises(AccessDenied) as refused:
                session.commit()
        assert refused.value.row_id == s.PRODUCT_VAPE
        assert connection.execute(text("SELECT current_user")).scalar() == "postgres"
