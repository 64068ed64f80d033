"""`align generate constraints`: seed tasks x constraint templates, split by task."""

from __future__ import annotations

import json

import pytest

from alignment import verifiers
from alignment.cli import main as align
from pipelines import constraints


@pytest.fixture(scope="module")
def built():
    tasks = constraints.read_tasks(constraints.TASKS)
    data = constraints.read_templates(constraints.TEMPLATES)
    return tasks, data, constraints.build(tasks, data, seed=0)


def test_no_task_is_on_both_sides(built):
    _, _, (train, heldout) = built
    assert {r["task_id"] for r in train}.isdisjoint({r["task_id"] for r in heldout})
    assert len(heldout) >= 40 and len(train) > 2 * len(heldout)
    assert all(r["split"] == "train" for r in train) and all(r["split"] == "heldout" for r in heldout)


def test_every_prompt_carries_checkable_specs(built):
    _, _, (train, heldout) = built
    for row in train + heldout:
        assert row["verifiers"] and row["prompt"].startswith(row["task"])
        for spec in row["verifiers"]:
            verifiers.check_spec(spec)
    kinds = {c for r in train for c in r["constraints"]}
    assert {"lowercase", "max_words", "ends_with", "json", "final_answer"} <= kinds


def test_parameters_fill_text_and_spec_alike(built):
    _, _, (train, _) = built
    row = next(r for r in train if r["constraints"] == ["max_words"])
    limit = row["verifiers"][0]["params"]["limit"]
    assert isinstance(limit, int) and f"at most {limit} words" in row["prompt"]
    js = next(r for r in train if r["constraints"] == ["json"])
    keys = js["verifiers"][0]["params"]["keys"]
    assert f'"{keys[0]}" and "{keys[1]}"' in js["prompt"]


def test_math_answers_are_right(built):
    _, _, (train, heldout) = built
    maths = [r for r in train + heldout if r["category"] == "math"]
    assert maths
    for row in maths:
        answer = row["verifiers"][0]["params"]["answer"]
        assert verifiers.run(row["verifiers"][0], f"The answer is {answer}.") == 1.0
        assert verifiers.run(row["verifiers"][0], f"The answer is {answer + 1}.") == 0.0


def test_same_seed_same_prompts_other_seed_other(built):
    tasks, data, (train, heldout) = built
    again = constraints.build(tasks, data, seed=0)
    assert again == (train, heldout)
    assert constraints.build(tasks, data, seed=1)[1] != heldout


def test_several_constraints_per_prompt(built):
    tasks, data, _ = built
    train, _ = constraints.build(tasks, data, constraints_per_prompt=2, seed=0)
    formatted = [r for r in train if r["category"] != "math"]
    assert all(len(r["verifiers"]) == 2 and len(set(r["constraints"])) == 2 for r in formatted)


def test_command_writes_both_splits_with_cards(tmp_path, capsys):
    out = tmp_path / "cons"
    assert align(["generate", "constraints", "-o", str(out), "--only", "lowercase", "quoted",
                  "--per-task", "1"]) == 0
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert {c for r in train for c in r["constraints"]} == {"lowercase", "quoted"}
    assert (out / "heldout.jsonl.README.md").exists() or (out / "heldout.README.md").exists()
    assert "held-out" not in capsys.readouterr().err


def test_dry_run_writes_nothing(tmp_path, capsys):
    assert align(["generate", "constraints", "--dry-run", "-o", str(tmp_path / "x")]) == 0
    assert "checks:" in capsys.readouterr().out and not (tmp_path / "x").exists()


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "tasks.jsonl"
    bad.write_text('{"id": "a", "task": "Fine."}\n{"id": "b", "task": ""}\n')
    assert align(["generate", "constraints", "--tasks", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "tasks.jsonl" in err and "row 2" in err and "task" in err
    templates = tmp_path / "t.json"
    templates.write_text(json.dumps({"constraints": [
        {"id": "x", "text": "Be short.", "verifier": {"name": "no_such_check"}}]}))
    assert align(["generate", "constraints", "--templates", str(templates), "--dry-run"]) == 2
    assert "no_such_check" in capsys.readouterr().err
    assert align(["generate", "constraints", "--only", "nope", "--dry-run"]) == 2
