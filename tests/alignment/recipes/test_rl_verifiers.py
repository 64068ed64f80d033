"""Verifiers as rewards (RLVR) in `align grpo` / `align rloo` on a tiny policy: without a
reward model, beside one with --reward_weights, per-prompt specs (`row`), and the
refusals that come before any model loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from alignment.cli import main as align

PROMPTS = ["Say hi.", "Count to 3.", "Name a colour.", "What is 2+2?"]


def write_prompts(path: Path, with_checks: bool = True) -> Path:
    rows = []
    for i, p in enumerate(PROMPTS):
        row = {"id": f"p{i}", "prompt": p}
        if with_checks:  # metadata beside the specs; half of the prompts carry a check
            row["task"] = "demo"
            if i % 2 == 1:
                row["verifiers"] = [{"name": "max_words", "params": {"limit": 1000}}]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rl(command: str, model: Path, data: Path, out: Path, *extra: str) -> int:
    return align([command, "--dataset", str(data), "--model", str(model),
                  "--output_dir", str(out), "--max_steps", "2", "--max_completion_length", "8",
                  "--learning_rate", "1e-2", "--save_strategy", "no", *extra])


def history(out: Path) -> list[dict]:
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def test_grpo_with_verifiers_only(tiny_model, tmp_path):
    out = tmp_path / "grpo"
    assert rl("grpo", tiny_model, write_prompts(tmp_path / "p.jsonl", False), out,
              "--verifier", "max_words:limit=3", "--verifier", "forbidden_chars:chars=!") == 0
    logged = [e for e in history(out) if "rewards/verifier_max_words/mean" in e]
    assert len(logged) == 2
    assert all(0 <= e["rewards/verifier_forbidden_chars/mean"] <= 1 for e in logged)
    m = json.loads((out / "metrics.json").read_text())
    assert m["reward_model"] is None and m["global_step"] == 2
    assert m["reward_functions"] == ["verifier_max_words", "verifier_forbidden_chars"]
    assert set(m["verifier_rewards"]) == {"verifier_max_words", "verifier_forbidden_chars"}
    assert (out / "adapter_model.safetensors").exists()


def test_rloo_reward_model_and_verifier_with_weights(tiny_model, tiny_reward_model, tmp_path,
                                                     capsys):
    out = tmp_path / "rloo"
    assert rl("rloo", tiny_model, write_prompts(tmp_path / "p.jsonl", False), out,
              "--reward_model", str(tiny_reward_model), "--verifier", "min_words:limit=4",
              "--reward_weights", "0.5", "2") == 0
    assert "rewards: model, verifier_min_words, weights [0.5, 2.0]" in capsys.readouterr().out
    logged = [e for e in history(out) if "rewards/verifier_min_words/mean" in e]
    assert len(logged) == 2 and all("rewards/model/mean" in e for e in logged)
    m = json.loads((out / "metrics.json").read_text())
    assert m["reward_weights"] == [0.5, 2.0] and m["reward_model"] == str(tiny_reward_model)


def test_grpo_row_uses_each_prompts_specs(tiny_model, tmp_path):
    out = tmp_path / "grpo-row"
    assert rl("grpo", tiny_model, write_prompts(tmp_path / "p.jsonl"), out,
              "--verifier", "row") == 0
    means = [e["rewards/verifier_row/mean"] for e in history(out)
             if "rewards/verifier_row/mean" in e]
    # prompts with a spec always pass it (1.0); prompts without one are not scored
    # (None), so they neither lower the mean nor count as 0
    assert len(means) == 2 and all(v == 1.0 or math.isnan(v) for v in means)
    assert any(v == 1.0 for v in means)


def test_row_reward_function_scores_per_prompt():
    from alignment.recipes._rl import verifier_rewards

    row, fixed = verifier_rewards(["row", "lowercase"])
    assert (row.__name__, fixed.__name__) == ("verifier_row", "verifier_lowercase")
    completions = [[{"role": "assistant", "content": "two words"}],
                   [{"role": "assistant", "content": "Three Words Here"}],
                   [{"role": "assistant", "content": "x"}]]
    # as the dataset hands them over: the params struct of every key, absent ones None
    specs = [[{"name": "max_words", "params": {"limit": 1, "answer": None}}],
             [{"name": "lowercase", "params": None},
              {"name": "max_words", "params": {"limit": 6, "answer": None}}],
             []]
    assert row(prompts=[None] * 3, completions=completions, verifiers=specs) == [0.5, 0.5, None]
    assert fixed(prompts=[None] * 3, completions=completions) == [1.0, 0.0, 1.0]
    a, b = verifier_rewards(["max_words:limit=2", "max_words:limit=4"])
    assert (a.__name__, b.__name__) == ("verifier_max_words", "verifier_max_words#2")


def test_user_verifier_reward_pickles_into_a_fresh_registry(monkeypatch):
    import pickle

    from alignment import verifiers
    from alignment.recipes._rl import verifier_rewards

    (reward,) = verifier_rewards(["tests.user_verifier:mentions:word=hi"])
    assert reward.__name__ == "verifier_mentions"
    data = pickle.dumps(reward)
    monkeypatch.delitem(verifiers.VERIFIERS, "tests.user_verifier:mentions")
    again = pickle.loads(data)
    assert again(prompts=["p"], completions=["hi hi", "no"]) == [1.0, 0.0]


def test_load_prompts_keeps_and_checks_verifiers(tmp_path):
    from alignment.errors import DataError
    from alignment.data.training_sets import load_prompts

    prompts = load_prompts([str(write_prompts(tmp_path / "p.jsonl"))])
    assert prompts.column_names == ["prompt", "verifiers"]
    by_text = {p[0]["content"]: v for p, v in zip(prompts["prompt"], prompts["verifiers"])}
    assert by_text["Count to 3."] == [{"name": "max_words", "params": {"limit": 1000}}]
    assert by_text["Say hi."] == []  # row 1 has no specs: the column is still found
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "verifiers": [{"name": "lowercase"}]}\n'
                   '{"prompt": "b", "verifiers": [{"name": "max_words", "params": {}}]}\n')
    with pytest.raises(DataError) as e:
        load_prompts([str(bad)])
    assert str(e.value).startswith("bad.jsonl row 2: field `verifiers[0].params`".replace(
        "bad.jsonl", str(bad)))
    clash = tmp_path / "clash.jsonl"
    clash.write_text(
        '{"prompt": "a", "verifiers": [{"name": "final_answer", "params": {"answer": 4}}]}\n'
        '{"prompt": "b", "verifiers": [{"name": "final_answer", "params": {"answer": "3/4"}}]}\n')
    with pytest.raises(DataError, match="give each parameter one type"):
        load_prompts([str(clash)])


@pytest.fixture
def no_model_loads(monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained",
                        no_load)


@pytest.mark.parametrize("extra,message", [
    (["--verifier", "max_words:limit=x"], "max_words:limit=x`.params.limit: expected int"),
    (["--verifier", "no_such_check"], "unknown verifier `no_such_check`"),
    (["--verifier", "lowercase", "--reward_weights", "1", "2"],
     "--reward_weights has 2 value(s) but there are 1 reward functions (verifier_lowercase)"),
    (["--verifier", "row"], "--verifier row: no prompt carries a `verifiers` list"),
    (["--verifier", "row", "--remove_unused_columns", "true"], "--remove_unused_columns true"),
])
def test_bad_verifier_options_are_refused_early(tiny_model, tmp_path, capsys, no_model_loads,
                                                extra, message):
    data = write_prompts(tmp_path / "p.jsonl", False)
    assert rl("grpo", tiny_model, data, tmp_path / "o", *extra) == 2
    assert message in capsys.readouterr().err


def test_reward_model_weights_count_names_every_function(tiny_model, tiny_reward_model,
                                                         tmp_path, capsys, no_model_loads):
    data = write_prompts(tmp_path / "p.jsonl", False)
    assert rl("rloo", tiny_model, data, tmp_path / "o", "--reward_model",
              str(tiny_reward_model), "--verifier", "lowercase", "--reward_weights", "1") == 2
    assert "(model, verifier_lowercase)" in capsys.readouterr().err
