"""docs/access-model.md and crm_schema/access_model.py are one model: they cannot drift."""

from __future__ import annotations

from pathlib import Path

from crm_schema import access_model as m

DOC = (Path(__file__).resolve().parents[1] / "docs" / "access-model.md").read_text()


def test_the_doc_holds_the_models_tables() -> None:
    assert m.render_tables() in DOC


def test_the_doc_holds_the_models_columns_and_bounds() -> None:
    assert m.render_columns() in DOC
    assert m.render_bounds() in DOC


def test_every_actor_relation_and_command_has_a_rule() -> None:
    for actor in m.ACTORS:
        assert set(m.MODEL[actor]) == set(m.ROW_KINDS), actor
        for relation, rule in m.MODEL[actor].items():
            assert tuple(rule) == m.commands(relation), (actor, relation)
            for kinds in rule.values():
                assert set(kinds) <= set(m.ROW_KINDS[relation]), (actor, relation)
