"""The package as an app's models library: RLS-aware sessions, soft delete, optimistic
locking, and the permissions and activity APIs, on a real database."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, pool, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from crm_schema import activity, permissions
from crm_schema.enums import ActivityType, PermissionType, ResourceType
from crm_schema.models import (
    INCLUDE_DELETED,
    DispensaryProfile,
    Order,
    Profile,
    UserPermission,
    restore,
    soft_delete,
)
from crm_schema.session import app_engine, service_session, user_session
from tests import sample_data as s
from tests.conftest import REPO


@pytest.fixture
def app(db_url: URL) -> Iterator[Engine]:
    """A pooled engine with ONE connection, over a database holding the sample CRM."""
    engine = app_engine(db_url, poolclass=pool.QueuePool, pool_size=1, max_overflow=0)
    with engine.begin() as connection:
        s.load(connection)
    yield engine
    engine.dispose()


def test_agent_session_sees_only_its_dispensaries(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session:
        names = session.scalars(select(DispensaryProfile.id)).all()
    assert names == [s.DISPENSARY_A]
    with service_session(app) as session:
        assert len(session.scalars(select(DispensaryProfile.id)).all()) == 3


def test_sessions_on_one_pooled_connection_never_share_claims(app: Engine) -> None:
    who = text("SELECT auth.uid(), current_user, pg_backend_pid()")
    with user_session(app, s.AGENT_A) as first:
        uid_a, role_a, pid_a = first.execute(who).one()
        first.commit()
        again = first.execute(who).one()  # a new transaction re-applies the claims
    with user_session(app, s.AGENT_B) as second:
        uid_b, role_b, pid_b = second.execute(who).one()
    with app.connect() as plain:
        uid_none, role_plain, pid_plain = plain.execute(who).one()
    assert pid_a == pid_b == pid_plain  # really the same pooled connection
    assert (uid_a, role_a) == (s.AGENT_A, "authenticated")
    assert tuple(again)[:2] == (s.AGENT_A, "authenticated")
    assert (uid_b, role_b) == (s.AGENT_B, "authenticated")
    assert uid_none is None
    assert role_plain != "authenticated"


def test_reads_hide_soft_deleted_rows_unless_asked(app: Engine) -> None:
    with user_session(app, s.ADMIN) as session:
        dispensary = session.get(DispensaryProfile, s.DISPENSARY_B)
        assert dispensary is not None
        soft_delete(session, dispensary)
        session.commit()
    with user_session(app, s.ADMIN) as session:
        live = session.scalars(select(DispensaryProfile.id)).all()
        everything = session.scalars(
            select(DispensaryProfile.id), execution_options={INCLUDE_DELETED: True}
        ).all()
        assert s.DISPENSARY_B not in live
        assert s.DISPENSARY_B in everything
        # Related rows keep their reference, and a relationship load still finds it.
        order = session.get(Order, s.ORDER_B)
        assert order is not None
        assert order.dispensary.id == s.DISPENSARY_B
    with user_session(app, s.AGENT_B) as session:  # RLS: agents never see it
        hidden = session.scalars(
            select(DispensaryProfile.id), execution_options={INCLUDE_DELETED: True}
        ).all()
        assert hidden == []
    with user_session(app, s.ADMIN) as session:
        deleted = session.scalars(
            select(DispensaryProfile).where(DispensaryProfile.id == s.DISPENSARY_B),
            execution_options={INCLUDE_DELETED: True},
        ).one()
        assert deleted.deleted_by == s.ADMIN
        restore(session, deleted)
        session.commit()
    with user_session(app, s.AGENT_B) as session:
        assert session.scalars(select(DispensaryProfile.id)).all() == [s.DISPENSARY_B]


def test_stale_update_raises_and_fresh_update_succeeds(db_url: URL) -> None:
    engine = app_engine(db_url)
    with engine.begin() as connection:
        s.load(connection)
    with user_session(engine, s.AGENT_A) as first, user_session(engine, s.AGENT_A) as second:
        mine = first.get(Order, s.ORDER_A)
        stale = second.get(Order, s.ORDER_A)
        assert mine is not None
        assert stale is not None
        assert mine.version == stale.version == 1
        mine.notes = "Call before delivery"
        first.commit()
        assert mine.version == 2  # read back from the database, not computed by the ORM
        stale.notes = "A conflicting edit"
        with pytest.raises(StaleDataError):
            second.commit()
        second.rollback()
        fresh = second.get(Order, s.ORDER_A)
        assert fresh is not None
        fresh.notes = "Merged edit"
        second.commit()
        assert fresh.version == 3
    engine.dispose()


def test_expiring_grant_stops_applying(app: Engine) -> None:
    # A few seconds of validity, so a loaded machine cannot expire it before the first check.
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    with user_session(app, s.ADMIN) as session:
        row = permissions.grant(
            session,
            s.AGENT_A,
            PermissionType.EXPORT,
            ResourceType.REPORT,
            expires_at=expires,
            reason="quarter-end report",
        )
        assert (row.granted, row.granted_by, row.reason) == (True, s.ADMIN, "quarter-end report")
        session.commit()
    with user_session(app, s.AGENT_A) as session:
        assert permissions.has_permission(
            session, s.AGENT_A, PermissionType.EXPORT, ResourceType.REPORT
        )
    # Waiting for the expiry, not timing anything.
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)
    with user_session(app, s.AGENT_A) as session:
        assert not permissions.has_permission(
            session, s.AGENT_A, PermissionType.EXPORT, ResourceType.REPORT
        )


def test_deny_revoke_and_effective_permissions(app: Engine) -> None:
    with user_session(app, s.ADMIN) as session:
        permissions.deny(
            session,
            s.AGENT_A,
            PermissionType.READ,
            ResourceType.PRODUCT,
            reason="catalogue embargo",
        )
        session.commit()
        effective = {
            (e.permission, e.resource): e
            for e in permissions.effective_permissions(session, s.AGENT_A)
        }
        embargo = effective[(PermissionType.READ, ResourceType.PRODUCT)]
        assert (embargo.allowed, embargo.source) == (False, "override")
        assert effective[(PermissionType.READ, ResourceType.ORDER)].source == "role default"
        assert permissions.revoke(session, s.AGENT_A, PermissionType.READ, ResourceType.PRODUCT)
        assert not permissions.revoke(session, s.AGENT_A, PermissionType.READ, ResourceType.PRODUCT)
        session.commit()
        assert permissions.has_permission(
            session, s.AGENT_A, PermissionType.READ, ResourceType.PRODUCT
        )


def test_agents_cannot_grant_not_even_to_themselves(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session, pytest.raises(Exception, match="row-level"):
        permissions.grant(session, s.AGENT_A, PermissionType.MANAGE, ResourceType.SYSTEM)
    with service_session(app) as session:
        assert session.scalars(select(UserPermission)).all() == []


def test_log_activity_returns_the_id_and_is_self_only(app: Engine) -> None:
    with user_session(app, s.AGENT_A) as session:
        log_id = activity.log_activity(
            session, ActivityType.EXPORT, ResourceType.ORDER, s.ORDER_A, {"rows": 12}
        )
        session.commit()
        with pytest.raises(Exception, match="only log activity for yourself"):
            activity.log_activity(session, ActivityType.LOGIN, user_id=s.AGENT_B)
    with service_session(app) as session:
        row = session.execute(
            text("SELECT user_id, activity::text, metadata FROM user_activity_log WHERE id = :i"),
            {"i": log_id},
        ).one()
    assert tuple(row) == (s.AGENT_A, "export", {"rows": 12})


def test_relationships_follow_the_foreign_keys(app: Engine) -> None:
    with service_session(app) as session:
        permissions.grant(session, s.AGENT_B, PermissionType.EXPORT, ResourceType.ORDER)
        agent = session.get(Profile, s.AGENT_B)
        assert agent is not None
        assert [p.permission for p in agent.permissions] == [PermissionType.EXPORT]
        assert agent.permissions[0].user is agent
        assert [d.id for d in agent.dispensaries] == [s.DISPENSARY_B]


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using the models in your app", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README section has no Python example"
    return match.group(1)


def test_readme_example_runs(
    app: Engine, db_url: URL, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url.render_as_string(hide_password=False))
    exec(compile(_readme_example(), "README.md", "exec"), {})  # noqa: S102 - our own README
    printed = capsys.readouterr().out
    assert "2 dispensaries" not in printed  # the agent sees its own dispensary only
    assert ": 1 dispensaries, may export orders: False" in printed
    with Session(app) as session:
        notes = session.scalars(
            select(DispensaryProfile.notes).where(DispensaryProfile.id == s.DISPENSARY_A)
        ).one()
    assert notes == "Prefers deliveries before noon"
    assert os.environ["DATABASE_URL"]
