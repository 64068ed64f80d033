"""`align rloo` and `align grpo` against reward models on a tiny policy: prompts from any
dataset, the policy moves, reward and KL are logged and plotted, refusals come early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import DATASETS, write_pairs


def rl(command: str, model: Path, reward: Path, data: Path, out: Path, *extra: str) -> int:
    return align([command, "--reward-model", str(reward), "--dataset", str(data),
                  "--model", str(model), "--output_dir", str(out), "--max_steps", "3",
                  "--max_completion_length", "8", "--learning_rate", "1e-2",
                  "--save_strategy", "no", *extra])


def check_run(out: Path) -> dict:
    from safetensors.torch import load_file

    for name in ("adapter_model.safetensors", "metrics.json", "README.md", "training_curves.png"):
        assert (out / name).exists(), name
    weights = load_file(out / "adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for n, t in weights.items() if "lora_B" in n)
    m = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    rewards = [e["reward"] for e in history if "reward" in e]
    assert len(rewards) == 3 and len(set(rewards)) > 1  # the reward model scored new samples
    assert "kl" in m["train"] and any(e.get("kl", 0) != 0 for e in history)
    assert "| reward |" in (out / "README.md").read_text().replace("train reward", "reward")
    return m


@pytest.fixture(scope="module")
def trained_rm(tiny_model, tmp_path_factory) -> Path:
    """A reward model from `align rm`, so RLOO is tested on what users will feed it."""
    root = tmp_path_factory.mktemp("rl-rm")
    out = root / "rm"
    assert align(["rm", "--dataset", str(write_pairs(root / "pairs.jsonl", n=12)),
                  "--model", str(tiny_model), "--output_dir", str(out), "--max_steps", "2",
                  "--learning_rate", "5e-3", "--eval_split", "0.25", "--eval_strategy", "no",
                  "--save_strategy", "no"]) == 0
    return out


def test_rloo_against_an_align_rm_model(tiny_model, trained_rm, tmp_path):
    out = tmp_path / "rloo"
    assert rl("rloo", tiny_model, trained_rm, DATASETS / "trl_preference.jsonl", out) == 0
    m = check_run(out)
    assert m["global_step"] == 3 and m["reward_model"] == str(trained_rm)


def test_grpo_on_conversation_prompts(tiny_model, tiny_reward_model, tmp_path):
    out = tmp_path / "grpo"
    assert rl("grpo", tiny_model, tiny_reward_model, DATASETS / "sharegpt.jsonl", out) == 0
    m = check_run(out)
    assert m["config"]["GRPOConfig"]["beta"] == 0.04  # align's KL default, not TRL's 0


def test_load_prompts_from_every_kind(tmp_path):
    from alignment.data.training_sets import load_prompts

    plain = tmp_path / "prompts.jsonl"
    plain.write_text('{"prompt": "Say hi."}\n{"prompt": "Say hi."}\n{"prompt": "Count to 3."}\n')
    assert sorted(p[0]["content"] for p in load_prompts([str(plain)])["prompt"]) == [
        "Count to 3.", "Say hi."]
    chats = load_prompts([str(DATASETS / "sharegpt.jsonl")])["prompt"]
    # a multi-turn conversation keeps every turn before its last reply
    assert any(len(p) == 4 and p[-1]["content"] == "And of Spain?" for p in chats)
    assert all(p[-1]["role"] == "user" for p in chats)
    assert len(load_prompts([str(DATASETS / "ultrafeedback.jsonl")])) >= 1
    mixed = load_prompts([f"{plain}@1", str(DATASETS / "trl_preference.jsonl")])
    assert all(p[-1]["role"] == "user" for p in mixed["prompt"])


def test_a_causal_lm_is_not_a_reward_model(tiny_model, tmp_path, capsys, monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the reward model was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    code = rl("rloo", tiny_model, tiny_model, DATASETS / "trl_preference.jsonl", tmp_path / "o")
    assert code == 2 and "not a reward model" in capsys.readouterr().err


def test_missing_reward_model_and_bad_prompts(tiny_model, tiny_reward_model, tmp_path, capsys):
    assert align(["grpo", "--dataset", str(DATASETS / "sharegpt.jsonl"),
                  "--model", str(tiny_model)]) == 2
    assert "--reward_model is required" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": ""}\n')
    assert rl("grpo", tiny_model, tiny_reward_model, bad, tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "bad.jsonl row 2" in err and "prompt" in err


def test_rl_group_size_must_divide_the_batch(tiny_model, tiny_reward_model, tmp_path, capsys):
    code = rl("rloo", tiny_model, tiny_reward_model, DATASETS / "sharegpt.jsonl", tmp_path / "o",
              "--num_generations", "3")
    assert code == 2 and "divisible" in capsys.readouterr().err


def test_rl_help_says_why_no_ppo(capsys):
    for command in ("rloo", "grpo"):
        assert align([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "--num_generations" in out and "--reward_model" in out
        assert "no PPOTrainer" in " ".join(out.split())
