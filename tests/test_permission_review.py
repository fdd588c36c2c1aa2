"""``crm-schema stats --permissions``: the seed's yearly permission review. Every user override
with who granted it and when it expires, and the role defaults that differ from those revision
0007 created."""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from crm_schema import migrations
from tests import sample_data as s
from tests.test_cli import crm, one_error_line, url_text


def review(url: URL) -> tuple[int, dict[str, Any]]:
    result = crm("stats", "--permissions", "--json", "--url", url_text(url))
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def check(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in data["checks"] if c["name"] == name)


def test_a_fresh_schema_has_nothing_to_review(engine: Engine) -> None:
    with engine.begin() as connection:
        s.load(connection)
    code, data = review(engine.url)
    assert code == 0
    assert data["tables"]["User overrides"] == []
    assert data["tables"]["Role defaults added since the migration"] == []
    assert data["tables"]["Role defaults removed since the migration"] == []
    assert check(data, "expired overrides")["status"] == "PASS"


def test_lists_overrides_with_granter_and_expiry_and_changed_defaults(engine: Engine) -> None:
    with engine.begin() as connection:
        s.load(connection)
        connection.execute(
            text(
                "INSERT INTO user_permissions (user_id, permission, resource, granted, "
                "created_at, expires_at, granted_by, reason) "
                "VALUES (:a, 'export', 'order', true, now(), now() + interval '30 days', :admin, "
                "'Q1 audit'), (:b, 'read', 'product', false, now() - interval '40 days', "
                "now() - interval '1 day', :admin, NULL)"
            ),
            {"a": s.AGENT_A, "b": s.AGENT_B, "admin": s.ADMIN},
        )
        connection.execute(
            text(
                "INSERT INTO role_permissions (role, permission, resource, created_by) "
                "VALUES ('manager', 'delete', 'product', :admin)"
            ),
            {"admin": s.ADMIN},
        )
        connection.execute(
            text(
                "DELETE FROM role_permissions WHERE role = 'agent' AND permission = 'read' "
                "AND resource = 'product'"
            )
        )
    code, data = review(engine.url)
    assert code == 0  # a review reports; expired rows are a warning, not a failure
    overrides = data["tables"]["User overrides"]
    assert [(o["user"], o["permission"], o["resource"], o["effect"]) for o in overrides] == [
        ("agent.a@cakeoklahoma.com", "export", "order", "granted"),
        ("agent.b@cakeoklahoma.com", "read", "product", "denied"),
    ]
    assert {o["granted_by"] for o in overrides} == {s.ADMIN_EMAIL}
    assert [o["state"] for o in overrides] == ["active", "expired"]
    assert overrides[0]["reason"] == "Q1 audit"
    assert overrides[0]["expires"] != "never"
    assert check(data, "expired overrides")["status"] == "WARN"
    added = data["tables"]["Role defaults added since the migration"]
    assert [(a["role"], a["permission"], a["resource"], a["added_by"]) for a in added] == [
        ("manager", "delete", "product", s.ADMIN_EMAIL)
    ]
    assert data["tables"]["Role defaults removed since the migration"] == [
        {"role": "agent", "permission": "read", "resource": "product"}
    ]
    printed = crm("stats", "--permissions", "--url", url_text(engine.url)).stdout
    assert "Role defaults removed since the migration" in printed
    assert "agent.b@cakeoklahoma.com" in printed


def test_needs_the_default_permissions_revision(empty_db_url: URL) -> None:
    command.upgrade(migrations.make_config(empty_db_url), "0005_phase3_functions_triggers")
    line = one_error_line(crm("stats", "--permissions", "--url", url_text(empty_db_url)))
    assert "`crm-schema stats --permissions` needs 0007_phase5_default_data" in line
