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
                  "--output", str(output), "--batch_size", "3"]) == 0
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
    assert result["win_rate"] is None
    out = capsys.readouterr().out
    assert "preference accuracy" in out and "reference" in out


def test_eval_agrees_with_the_trainer_on_the_held_out_pairs(run):
    # Same adapter, same pairs, same beta: the implicit reward computed here must be the
    # one TRL reported at the end of training (one eval batch, so its mean is exact).
    from alignment.evaluate import evaluate

    result = evaluate(str(run), str(run / "eval_pairs.jsonl"))
    trainer = json.loads((run / "metrics.json").read_text())["eval"]
    assert result["pairs"] <= 4
    assert result["policy"]["reward_margin_mean"] == pytest.approx(
        trainer["rewards/margins"], rel=1e-3, abs=1e-4)
    assert result["policy"]["reward_chosen_mean"] == pytest.approx(
        trainer["rewards/chosen"], rel=1e-3, abs=1e-4)


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
