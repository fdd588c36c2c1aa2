"""The README's FastAPI recipe, run as it stands with FastAPI's TestClient: bearer tokens
become user sessions, and the package's errors become 401 / 403 / 404 / 409."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from crm_schema import permissions
from crm_schema.enums import PermissionType, ResourceType
from crm_schema.session import app_engine, service_session
from tests import sample_data as s
from tests.conftest import REPO

SECRET = "a-test-project-jwt-secret-of-at-least-32-chars"


def _recipe() -> str:
    section = (REPO / "README.md").read_text().split("### A FastAPI app", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's FastAPI section has no Python block"
    return match.group(1)


def bearer(user: uuid.UUID, **extra: Any) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": str(user), "aud": "authenticated", "role": "authenticated"}
    token = jwt.encode({**claims, "iat": now, "exp": now + 600, **extra}, SECRET, "HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(db_url: URL, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    loader: Engine = app_engine(db_url)
    with loader.begin() as connection:
        s.load(connection)
    loader.dispose()
    monkeypatch.setenv("DATABASE_URL", db_url.render_as_string(hide_password=False))
    monkeypatch.setenv("SUPABASE_JWT_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(compile(_recipe(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    namespace["app"].state.db_url = db_url
    with TestClient(namespace["app"]) as test_client:
        yield test_client
    namespace["engine"].dispose()


def test_each_user_sees_its_own_dispensaries(client: TestClient) -> None:
    mine = client.get("/dispensaries", headers=bearer(s.AGENT_A))
    assert mine.status_code == 200
    assert [d["id"] for d in mine.json()] == [str(s.DISPENSARY_A)]
    everything = client.get("/dispensaries", headers=bearer(s.MANAGER))
    assert len(everything.json()) == 3


def test_bad_or_missing_tokens_are_401_or_403(client: TestClient) -> None:
    expired = client.get("/dispensaries", headers=bearer(s.AGENT_A, exp=int(time.time()) - 5))
    assert expired.status_code == 401
    assert expired.json()["detail"].startswith("invalid access token: ")
    service = client.get("/dispensaries", headers=bearer(s.ADMIN, role="service_role"))
    assert service.status_code == 401
    assert client.get("/dispensaries").status_code in (401, 403)  # FastAPI's HTTPBearer


def test_edits_and_the_errors_an_app_answers_with(client: TestClient) -> None:
    agent = bearer(s.AGENT_A)
    url_a, url_b = f"/dispensaries/{s.DISPENSARY_A}", f"/dispensaries/{s.DISPENSARY_B}"
    done = client.patch(url_a, params={"notes": "Deliver before noon", "version": 1}, headers=agent)
    assert done.status_code == 200
    assert done.json() == {"version": 2}  # bumped by the database, read back
    stale = client.patch(url_a, params={"notes": "Old copy", "version": 1}, headers=agent)
    assert stale.status_code == 409
    hidden = client.patch(url_b, params={"notes": "Not mine", "version": 1}, headers=agent)
    assert hidden.status_code == 404
    assert hidden.json()["table"] == "dispensary_profiles"
    # An explicit deny: agent A still reads its dispensary, but RLS refuses the UPDATE.
    admin_engine = app_engine(client.app.state.db_url)
    with service_session(admin_engine) as session:
        permissions.deny(session, s.AGENT_A, PermissionType.UPDATE, ResourceType.DISPENSARY)
        session.commit()
    admin_engine.dispose()
    refused = client.patch(url_a, params={"notes": "x", "version": 2}, headers=agent)
    assert refused.status_code == 403
    assert refused.json()["id"] == str(s.DISPENSARY_A)
