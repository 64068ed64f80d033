"""Persona-driven prompts: the shipped lists, seeded draws, user-list errors, the teacher
step on the fake teacher, and the command's output."""

from __future__ import annotations

from collections import Counter

import pytest

from alignment.cli import main as align
from alignment.data import read_card, read_rows
from alignment.errors import DataError
from pipelines import personas
from pipelines.fake import FakeLLM, fake_reply
from pipelines.runner import text_id
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def shipped():
    return personas.read_personas(), personas.read_templates()


def test_shipped_list_is_large_unique_and_varied(shipped):
    people, templates = shipped
    assert len(people) >= 300
    assert len({p["persona_id"] for p in people}) == len(people)
    assert len({p["persona"].lower() for p in people}) == len(people)
    levels = Counter(p["expertise"] for p in people)
    assert set(levels) == set(personas.EXPERTISE) and min(levels.values()) >= 40
    domains = Counter(p["domain"] for p in people)
    assert {"science", "trades", "arts", "law", "medicine", "farming", "sports", "finance",
            "teaching", "software"} <= set(domains) and len(domains) >= 20
    assert len({p["tone"] for p in people}) >= 10
    assert len(templates) >= 10 and len({t["template_id"] for t in templates}) == len(templates)


def test_shipped_file_is_packaged():
    import tomllib

    root = ROOT
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "data/*" in data["package-data"]["pipelines"]
    assert personas.PERSONAS.parent.name == "data" and personas.PERSONAS.exists()


def test_same_seed_same_rows_other_seed_other(shipped):
    people, templates = shipped
    a = personas.build_requests(people, templates, 50, seed=0)
    assert a == personas.build_requests(people, templates, 50, seed=0)
    b = personas.build_requests(people, templates, 50, seed=1)
    assert [r["id"] for r in a] != [r["id"] for r in b]


def test_pairs_are_distinct_and_personas_even(shipped):
    people, templates = shipped
    n = len(people) + 20  # one full round and part of the next
    rows = personas.build_requests(people, templates, n, seed=7)
    pairs = {(r["persona_id"], r["template_id"]) for r in rows}
    assert len(pairs) == n == len({r["id"] for r in rows})
    uses = Counter(r["persona_id"] for r in rows)
    assert set(uses.values()) == {1, 2} and sum(v == 2 for v in uses.values()) == 20
    row = rows[0]
    persona = next(p for p in people if p["persona_id"] == row["persona_id"])
    assert persona["persona"] in row["request"] and row["request"].startswith("Here is a person:")
    assert row["domain"] == persona["domain"] and row["expertise"] == persona["expertise"]


def test_every_pair_can_be_drawn_and_no_more():
    from alignment.errors import ConfigError

    people = [{"persona_id": str(i), "persona": f"P{i}.", "domain": "d", "expertise": "novice",
               "tone": None} for i in range(3)]
    templates = [{"template_id": t, "text": f"{t} about {{domain}}"} for t in "ab"]
    rows = personas.build_requests(people, templates, 6)
    assert len({(r["persona_id"], r["template_id"]) for r in rows}) == 6
    with pytest.raises(ConfigError, match="1 to 6"):
        personas.draw(people, templates, 7)


def _write(tmp_path, lines: list[str]):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("second, row, field", [
    ('{"id": "b"}', 2, "persona"),
    ('{"id": "b", "persona": "   "}', 2, "persona"),
    ('{"id": "a", "persona": "Someone else."}', 2, "id"),
    ('{"id": "b", "persona": "A potter."}', 2, "persona"),
    ('{"id": "b", "persona": "A chef.", "expertise": "guru"}', 2, "expertise"),
    ('{"persona": "A chef."}', 2, "id"),
    ('{"id": "b", "persona": "A chef.", "domain": 5}', 2, "domain"),
])
def test_user_list_errors_name_file_row_and_field(tmp_path, second, row, field):
    path = _write(tmp_path, ['{"id": "a", "persona": "A potter."}', second])
    with pytest.raises(DataError) as e:
        personas.read_personas(path)
    assert (e.value.path, e.value.row, e.value.field) == (str(path), row, field)


def test_bad_user_list_exits_2_with_a_clear_message(tmp_path, capsys):
    path = _write(tmp_path, ['{"id": "a", "persona": "A potter."}',
                             '{"id": "b", "persona": ""}'])
    assert align(["generate", "personas", "--personas", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "mine.jsonl row 2: field `persona`" in err
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"id": "x", "text": "a question about {topic}"}\n')
    assert align(["generate", "personas", "--templates", str(bad), "--dry-run"]) == 2
    assert "t.jsonl row 1: field `text`" in capsys.readouterr().err


def test_user_list_defaults_and_filters(tmp_path):
    path = _write(tmp_path, ['{"id": 1, "persona": "A potter.", "expertise": "hobbyist"}',
                             '{"id": 2, "persona": "A judge.", "domain": "law"}'])
    people = personas.read_personas(path)
    assert [(p["persona_id"], p["domain"], p["expertise"]) for p in people] == [
        ("1", "general", "hobbyist"), ("2", "law", "unspecified")]
    assert [p["persona_id"] for p in personas.select(people, ["law"], None)] == ["2"]
    from alignment.errors import ConfigError

    with pytest.raises(ConfigError, match="known: general, law"):
        personas.select(people, ["music"], None)


def test_dry_run_prints_readable_rows_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert align(["generate", "personas", "--dry-run", "--num-prompts", "5",
                  "--expertise", "expert", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("Here is a person:") == 4 and "5 rows from 5 of 63 personas" in text
    assert "expertise: expert 5" in text and not out.exists()


def test_command_writes_requests_with_ids_and_card(tmp_path):
    out = tmp_path / "requests.jsonl"
    assert align(["generate", "personas", "--num-prompts", "30", "--seed", "4",
                  "-o", str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 30 and all(r["persona_id"] and r["template_id"] for r in rows)
    assert all(r["id"] == text_id(r["request"]) and "prompt" not in r for r in rows)
    card = read_card(out)
    assert card["rows"] == 30 and card["seed"] == 4 and card["personas"] == 315
    again = tmp_path / "again.jsonl"
    assert align(["generate", "personas", "--num-prompts", "30", "--seed", "4",
                  "-o", str(again)]) == 0
    assert out.read_text() == again.read_text()


def test_teacher_writes_each_persona_prompt(tmp_path, shipped):
    people, templates = shipped
    requests = personas.build_requests(people, templates, 6, seed=2)
    rows, counts = personas.teach(requests, FakeLLM(), batch_size=4)
    assert counts == {"empty_prompts": 0, "duplicate_prompts": 0} and len(rows) == 6
    for row, req in zip(rows, requests):
        expected = fake_reply([{"role": "user", "content": req["request"]}])
        assert row["prompt"] == expected and row["id"] == text_id(expected)
        assert row["request_id"] == req["id"] and row["persona_id"] == req["persona_id"]
        assert row["template_id"] == req["template_id"] and row["model_name"] == "fake-teacher"
        assert row["finish_reasons"] == ["stop"] and row["truncated"] is False
    # the fake speaks as the persona: the prompt opens with who is asking
    first = requests[0]["persona"].split(". ")[0]
    assert rows[0]["prompt"].startswith(f"As {first[:1].lower()}{first[1:]},")


def test_teacher_dry_run_previews_prompts_and_rows_read_back(tmp_path, capsys):
    from alignment.data import read_prompt_rows, write_rows

    out = tmp_path / "prompts.jsonl"
    assert align(["generate", "personas", "--teacher", "--dry-run", "--num-prompts", "3",
                  "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("-> prompt: As ") == 3 and not out.exists()
    requests = personas.build_requests(personas.read_personas(), personas.read_templates(), 3)
    rows, _ = personas.teach(requests, FakeLLM(), batch_size=3)
    write_rows(rows, out)
    back = read_prompt_rows(out)  # what responses / preference read as --prompts
    assert [r["prompt"] for r in back] == [r["prompt"] for r in rows]
    assert [r["persona_id"] for r in back] == [r["persona_id"] for r in requests]
