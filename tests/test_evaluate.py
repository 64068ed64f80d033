"""`align eval` on a freshly trained adapter, and `align report` re-rendering a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.test_dpo import train, write_pairs


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    out = root / "run"
    assert train(tiny_model, write_pairs(root / "pairs.jsonl"), out) == 0
    return out


def test_eval_policy_against_reference(run, tmp_path, capsys):
    output = tmp_path / "eval.json"
    pairs = write_pairs(tmp_path / "held.jsonl", n=6)
    assert align(["eval", "--model", str(run), "--dataset", str(pairs),
                  "--output", str(output), "--batch_size", "3", "--no_win_rate"]) == 0
    result = json.loads(output.read_text())
    policy, reference = result["policy"], result["reference"]
    for value in (policy["reward_accuracy"], policy["logprob_accuracy"],
                  reference["logprob_accuracy"]):
        assert 0 <= value <= 1
    assert result["pairs"] == 6 and result["beta"] == 0.1  # beta read from the run
    # the untrained base prefers the short rejected answer; DPO moved the policy
    assert reference["logprob_accuracy"] == 0
    assert policy["reward_accuracy"] == 1 and policy["reward_margin_mean"] > 0
    assert policy["reward_chosen_mean"] > policy["reward_rejected_mean"]
    assert result["win_rate"] is None and "judged" not in result
    assert not output.with_suffix(".samples.md").exists()
    out = capsys.readouterr().out
    assert "preference accuracy" in out and "reference" in out


def test_eval_agrees_with_the_trainer_on_the_held_out_pairs(run):
    # Same adapter, same pairs, same beta: the implicit reward computed here must be the
    # one TRL reported at the end of training (one eval batch, so its mean is exact).
    from alignment.evaluate import evaluate

    result = evaluate(str(run), str(run / "eval_pairs.jsonl"), judge=None)
    trainer = json.loads((run / "metrics.json").read_text())["eval"]
    assert result["pairs"] <= 4
    assert result["policy"]["reward_margin_mean"] == pytest.approx(
        trainer["rewards/margins"], rel=1e-3, abs=1e-4)
    assert result["policy"]["reward_chosen_mean"] == pytest.approx(
        trainer["rewards/chosen"], rel=1e-3, abs=1e-4)


def test_eval_judged_win_rate_and_samples(run, tiny_model, tmp_path, capsys):
    output = tmp_path / "eval.json"
    pairs = write_pairs(tmp_path / "held.jsonl", n=8)  # 6 distinct prompts
    assert align(["eval", "--model", str(run), "--dataset", str(pairs), "--output", str(output),
                  "--judge", str(tiny_model), "--max-new-tokens", "6", "--samples", "2"]) == 0
    result = json.loads(output.read_text())
    judged = result["judged"]
    assert judged["prompts"] == 6 and judged["judged"] + judged["no_verdict"] == 6
    assert judged["wins"] + judged["losses"] + judged["ties"] == judged["judged"] > 0
    assert 0 <= result["win_rate"] <= 1 and result["win_rate"] == judged["win_rate"]
    assert result["win_rate"] == pytest.approx(
        (judged["wins"] + 0.5 * judged["ties"]) / judged["judged"])
    for key in ("tie_rate", "position_inconsistent_rate", "p_trained_mean"):
        assert 0 <= judged[key] <= 1
    assert judged["judge"] == str(tiny_model) and judged["max_new_tokens"] == 6
    assert len(result["samples"]) == 2
    for s in result["samples"]:
        assert s["prompt"] and {"base", "trained", "winner", "p_trained"} <= set(s)
    markdown = output.with_suffix(".samples.md").read_text()
    assert result["samples"][0]["prompt"] in markdown and "**Trained**" in markdown
    out = capsys.readouterr().out
    assert "judged win rate" in out and "samples:" in out


def test_eval_refuses_a_missing_judge_before_loading(run, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "held.jsonl", n=2)
    assert align(["eval", "--model", str(run), "--dataset", str(pairs),
                  "--judge", str(tmp_path / "no-such-judge")]) == 2
    assert "--judge" in capsys.readouterr().err


def test_full_model_needs_base(tiny_model, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "held.jsonl", n=2)
    assert align(["eval", "--model", str(tiny_model), "--dataset", str(pairs)]) == 2
    assert "--base" in capsys.readouterr().err


def test_report_rerenders(run, capsys):
    png = run / "training_curves.png"
    png.unlink()
    assert align(["report", str(run)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "train loss:" in out and "->" in out and str(png) in out


def test_report_on_a_folder_without_a_run(tmp_path, capsys):
    assert align(["report", str(tmp_path)]) == 2
    assert "trainer_state.json" in capsys.readouterr().err
