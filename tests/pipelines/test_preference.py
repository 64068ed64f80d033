"""The preference pipeline end to end, its steps, seeds and the `align generate` command."""

import json

import pytest

from alignment.data import read_card, read_rows, validate_rows
from alignment.errors import DataError
from pipelines import cli
from pipelines.instructions import CleanInstructions
from pipelines.preference import load_seeds
from pipelines.preference import run_preference_pipeline


def test_tiny_model_end_to_end(tiny_model, tmp_path):
    out, pairs = tmp_path / "ranked.jsonl", tmp_path / "pairs.jsonl"
    path = run_preference_pipeline(
        out, model=str(tiny_model), judge=str(tiny_model), num_instructions=3,
        num_responses=3, max_new_tokens=6, batch_size=2, judge_batch_size=4,
        pairs=str(pairs), keep_truncated=True)  # 6 tokens cut off most answers
    assert path == out
    rows = validate_rows(read_rows(out), "ranked", out)
    assert len(rows) == 3
    seeds = set(load_seeds())
    for row in rows:
        assert row["prompt"] in seeds
        assert len(row["responses"]) == len(row["scores"]) == len(row["judge_raw"]) == 3
        assert row["models"] == [str(tiny_model)] * 3
        assert row["judge"] == f"rating-judge:{tiny_model}"
        assert all(1 <= s <= 5 for s in row["scores"])  # the tiny vocab has every digit
        assert all("digit_probs" in json.loads(r) for r in row["judge_raw"])
        assert set(row["finish_reasons"]) <= {"stop", "length"}
        assert row["truncated"] == [r == "length" for r in row["finish_reasons"]]
    card = read_card(out)
    assert card["counts"]["truncated_responses"] == sum(sum(r["truncated"]) for r in rows) > 0
    assert card["counts"]["instructions"] == 3 and card["counts"]["responses"] == 9
    assert card["counts"]["judge_failures"] == 0
    assert card["teacher"]["generation"]["num_responses"] == 3
    assert "Rate the response" in card["prompt_templates"]["judge"]
    assert read_card(pairs)["counts"]["rows"] == 3
    for pair in read_rows(pairs):
        assert pair["score_chosen"] > pair["score_rejected"]


def test_clean_instructions_dedups_strips_and_caps():
    step = CleanInstructions(max_instructions=3)
    step.load()
    rows = [{"input": "seed a", "instructions": ["1. Name three fruits.", "- Name three fruits.",
                                                 "short", "Query 2: Describe a rainy day."]},
            {"input": "seed b", "instructions": ['"Explain how a bicycle works."',
                                                 "Write a haiku about snow."]}]
    out = next(step.process(rows))
    assert out == [{"instruction": "Name three fruits.", "seed": "seed a"},
                   {"instruction": "Describe a rainy day.", "seed": "seed a"},
                   {"instruction": "Explain how a bicycle works.", "seed": "seed b"}]


def test_seed_files(tmp_path):
    assert len(load_seeds()) >= 40
    txt = tmp_path / "s.txt"
    txt.write_text("first task\n\nsecond task\n")
    assert load_seeds(txt) == ["first task", "second task"]
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": 3}\n')
    with pytest.raises(DataError, match="row 2"):
        load_seeds(bad)


def test_generate_command_lists_and_dispatches(capsys):
    assert cli.main(["--help"]) == 0
    assert "preference" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["preference", "--help"])
    assert e.value.code == 0 and "--num-responses" in capsys.readouterr().out
    assert cli.main(["nope"]) == 2


@pytest.mark.slow
def test_smollm2_end_to_end(smollm2, tmp_path):
    out = tmp_path / "ranked.jsonl"
    run_preference_pipeline(out, num_instructions=2, num_responses=2, max_new_tokens=24)
    rows = validate_rows(read_rows(out), "ranked", out)
    assert len(rows) == 2 and all(len(r["responses"]) == 2 for r in rows)
    assert all(r["models"] == ["smollm2", "smollm2"] for r in rows)
    assert read_card(out)["counts"]["mean_digit_mass"] > 0.5


def test_rerun_with_other_settings_does_not_reuse_rows_and_same_run_resumes(tiny_model, tmp_path):
    """distilabel leaves a loader's data out of its cache key; ours must not mix runs."""
    common = dict(model=str(tiny_model), judge=str(tiny_model), num_responses=2,
                  max_new_tokens=4, batch_size=2)
    first = read_rows(run_preference_pipeline(tmp_path / "a.jsonl", num_instructions=2, **common))
    second = read_rows(run_preference_pipeline(tmp_path / "b.jsonl", num_instructions=4, **common))
    assert len(first) == 2 and len(second) == 4
    # the same run again is answered from its journal: identical rows, nothing regenerated
    again = read_rows(run_preference_pipeline(tmp_path / "c.jsonl", num_instructions=4, **common))
    assert again == second



def test_the_teacher_is_model_as_in_every_pipeline():
    from pipelines.preference import parser

    ap = parser()
    assert ap.parse_args(["--model", "m"]).model == "m"
    assert ap.parse_args(["--teacher", "m"]).model == "m"  # its former name still works
    assert ap.parse_args([]).model == "smollm2"
    assert "--teacher" not in ap.format_help() and "--model" in ap.format_help()
