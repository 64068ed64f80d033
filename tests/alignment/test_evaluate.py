"""`align eval` on a freshly trained adapter, and `align report` re-rendering a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import train, write_pairs


# bf16 keeps 8 bits of mantissa (relative rounding ~4e-3 per operation), and a reward is a
# difference of two sums of log-probabilities, which cancels and so magnifies that error:
# bf16 figures agree to a couple of percent, float32 ones to 1e-3.
TOLERANCE = {"bfloat16": 2e-2, "float32": 1e-3}


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    out = root / "run"
    assert train(tiny_model, write_pairs(root / "pairs.jsonl"), out) == 0
    return out


@pytest.fixture(scope="module")
def bf16_run(tiny_model, tmp_path_factory) -> Path:
    """A run trained the way align trains on a CPU with native bf16 (AMX, avx512_bf16).

    bf16 autocast works on any x86 CPU (emulated, only slower), so pretending the CPU has
    it gives the same bf16 run here.
    """
    root = tmp_path_factory.mktemp("eval_bf16")
    out = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("alignment.hardware.cpu_has_fast_bf16", lambda: True)
        assert train(tiny_model, write_pairs(root / "pairs.jsonl"), out) == 0
    return out


def assert_agrees_with_the_trainer(result: dict, run: Path) -> None:
    """Same adapter, same pairs, same beta: the implicit reward computed by ``align eval``
    must be the one TRL reported at the end of training (one eval batch, so its mean is
    exact), within what the run's dtype allows."""
    trainer = json.loads((run / "metrics.json").read_text())["eval"]
    rel = TOLERANCE[result["dtype"]]
    assert result["pairs"] <= 4
    assert result["policy"]["reward_margin_mean"] == pytest.approx(
        trainer["rewards/margins"], rel=rel, abs=1e-4)
    assert result["policy"]["reward_chosen_mean"] == pytest.approx(
        trainer["rewards/chosen"], rel=rel, abs=1e-4)


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
    assert result["pairs"] == 6 and result["beta"] == 0.5  # beta read from the run
    # the untrained base prefers the short rejected answer; DPO moved the policy
    assert reference["logprob_accuracy"] == 0
    assert policy["reward_accuracy"] == 1 and policy["reward_margin_mean"] > 0
    assert policy["reward_chosen_mean"] > policy["reward_rejected_mean"]
    assert result["win_rate"] is None and "judged" not in result
    assert not output.with_suffix(".samples.md").exists()
    out = capsys.readouterr().out
    assert "preference accuracy" in out and "reference" in out


def test_eval_agrees_with_the_trainer_on_the_held_out_pairs(run):
    from alignment.evaluate import evaluate

    result = evaluate(str(run), str(run / "eval_pairs.jsonl"), judge=None)
    # this CPU's own choice: bf16 where it is native, float32 elsewhere
    trained_bf16 = json.loads((run / "metrics.json").read_text())["config"]["DPOConfig"]["bf16"]
    assert result["dtype"] == ("bfloat16" if trained_bf16 else "float32")
    assert_agrees_with_the_trainer(result, run)


def test_eval_of_a_bf16_run_scores_in_bf16_and_agrees_with_the_trainer(bf16_run, tmp_path,
                                                                       capsys):
    config = json.loads((bf16_run / "metrics.json").read_text())["config"]
    assert config["DPOConfig"]["bf16"] is True and config["ModelConfig"]["dtype"] == "float32"
    output = tmp_path / "eval.json"
    assert align(["eval", "--model", str(bf16_run), "--dataset",
                  str(bf16_run / "eval_pairs.jsonl"), "--output", str(output),
                  "--no_win_rate"]) == 0
    result = json.loads(output.read_text())
    assert result["dtype"] == "bfloat16" and "bf16 mixed precision" in result["dtype_why"]
    assert "scoring in bfloat16: the run's own" in capsys.readouterr().out
    assert_agrees_with_the_trainer(result, bf16_run)


def test_eval_dtype_flag_overrides_the_run(bf16_run, tmp_path, capsys):
    output = tmp_path / "eval.json"
    assert align(["eval", "--model", str(bf16_run), "--dataset",
                  str(bf16_run / "eval_pairs.jsonl"), "--output", str(output),
                  "--no_win_rate", "--dtype", "float32"]) == 0
    result = json.loads(output.read_text())
    assert result["dtype"] == "float32" and result["dtype_why"].startswith("--dtype float32")
    assert "scoring in float32: --dtype float32" in capsys.readouterr().out


def test_precision_without_a_run_record_follows_the_cpu(tiny_model, monkeypatch):
    from alignment.evaluate import choose_precision

    monkeypatch.setattr("alignment.hardware.cpu_has_fast_bf16", lambda: False)
    assert choose_precision(str(tiny_model)).dtype == "float32"
    monkeypatch.setattr("alignment.hardware.cpu_has_fast_bf16", lambda: True)
    native = choose_precision(str(tiny_model))
    # mixed precision over float32 weights, as training on such a CPU would run
    assert (native.weights, native.autocast) == ("float32", "bfloat16")
    assert "native bf16" in native.why
    assert choose_precision(str(tiny_model), "float32").dtype == "float32"


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


# ---------------------------------------------------------------- picking the judge

def _calibration(path: Path, judges: list[tuple[str, float, list[float]]]) -> str:
    """A calibration.json as `align annotate calibrate` writes it, judges best first."""
    path.write_text(json.dumps({"records": 30, "judges": [
        {"judge": name, "records_compared": 30,
         "kendall_tau": {"n": 30, "mean": tau, "ci95": ci},
         "top1_agreement": {"n": 30, "mean": 0.5, "ci95": [0.3, 0.7]}}
        for name, tau, ci in judges]}))
    return str(path)


def test_judge_from_picks_the_best_agreeing_judge_that_loads(run, tiny_model, tmp_path,
                                                            capsys):
    calib = _calibration(tmp_path / "calibration.json", [
        ("rating-judge:no-such-model", 0.8, [0.7, 0.9]),
        (f"pairwise-judge:{tiny_model}", 0.4, [0.2, 0.6]),
        ("smollm2", 0.1, [-0.1, 0.3])])
    output = tmp_path / "eval.json"
    pairs = write_pairs(tmp_path / "held.jsonl", n=4)
    assert align(["eval", "--model", str(run), "--dataset", str(pairs), "--output",
                  str(output), "--judge-from", calib, "--max-new-tokens", "4",
                  "--win-rate-prompts", "2", "--samples", "0"]) == 0
    out = capsys.readouterr().out
    assert f"judge {tiny_model} picked from {calib}: Kendall's tau with people 0.40 " \
           "[0.20, 0.60]" in out
    assert "passed over rating-judge:no-such-model" in out and "not above chance" not in out
    result = json.loads(output.read_text())
    assert result["judged"]["judge"] == str(tiny_model)
    choice = result["judge_choice"]
    assert choice["judge"] == str(tiny_model) and choice["above_chance"] is True
    assert [p["judge"] for p in choice["passed_over"]] == ["rating-judge:no-such-model"]


def test_judge_from_warns_when_agreement_is_at_chance(tiny_model, tmp_path):
    from alignment.winrate import format_choice, judge_spec, pick_judge

    assert judge_spec("rating-judge:smollm2") == "smollm2"
    assert judge_spec("qwen (endpoint, strict parse)") == "qwen"
    calib = _calibration(tmp_path / "c.json", [(str(tiny_model), 0.05, [-0.2, 0.3])])
    choice = pick_judge(calib)
    assert choice["judge"] == str(tiny_model) and choice["above_chance"] is False
    assert "not above chance" in "\n".join(format_choice(choice))


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not JSON"),
    ('{"judges": []}', "field `judges`: no judges"),
    ('{"judges": [{"judge": "rating-judge:nowhere", "kendall_tau": {"mean": 0.5}}]}',
     "no judge in it loads here"),
])
def test_judge_from_refuses_bad_calibration_files(run, tmp_path, capsys, content, message):
    calib = tmp_path / "calibration.json"
    if content is not None:
        calib.write_text(content)
    pairs = write_pairs(tmp_path / "held.jsonl", n=2)
    assert align(["eval", "--model", str(run), "--dataset", str(pairs),
                  "--judge-from", str(calib)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_judge_and_judge_from_together_are_refused(run, tiny_model, tmp_path, capsys):
    calib = _calibration(tmp_path / "c.json", [(str(tiny_model), 0.5, [0.3, 0.7])])
    pairs = write_pairs(tmp_path / "held.jsonl", n=2)
    assert align(["eval", "--model", str(run), "--dataset", str(pairs), "--judge",
                  str(tiny_model), "--judge-from", calib]) == 2
    assert "pass one" in capsys.readouterr().err
