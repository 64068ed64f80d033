"""`align cpo` with the SimPO loss on a tiny model, and its refusals before any model loads."""

from __future__ import annotations

import json

import pytest

from alignment.cli import main as align
from tests.helpers import write_pairs


def test_simpo_trains_the_adapter(tiny_model, tmp_path, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "simpo"
    assert align(["cpo", "--loss_type", "simpo", "--dataset", str(write_pairs(tmp_path / "p.jsonl")),
                  "--model", str(tiny_model), "--output_dir", str(out), "--max_steps", "4",
                  "--learning_rate", "5e-3", "--logging_steps", "1", "--eval_steps", "4",
                  "--save_strategy", "no"]) == 0
    printed = capsys.readouterr().out
    assert "cpo_alpha=0.0" in printed and "pure SimPO" in printed  # the working defaults
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    # PEFT starts every lora_B at zero, so a non-zero one was moved by training
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)
    m = json.loads((out / "metrics.json").read_text())
    assert m["global_step"] == 4 and m["train"]["loss"] != m["train_loss_first"]
    assert "rewards/margins" in m["train"] and "loss" in m["eval"]
    assert m["train"]["nll_loss"] == 0  # cpo_alpha 0: no likelihood term
    config = m["config"]["CPOConfig"]
    assert config["loss_type"] == "simpo" and config["cpo_alpha"] == 0 and config["beta"] == 2.0
    card = (out / "README.md").read_text()
    assert "experimental" in card and "| `loss_type` | `simpo` |" in card
    assert (out / "eval_pairs.jsonl").exists() and (out / "training_curves.png").exists()


@pytest.mark.parametrize("flags, message", [
    (["--loss_type", "simpo", "--beta", "0"], "beta must be > 0"),
    (["--generate_during_eval"], "Weights & Biases"),
])
def test_refused_before_loading(tiny_model, tmp_path, capsys, monkeypatch, flags, message):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the configuration was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    # the dataset does not exist either: the refusal must come first
    code = align(["cpo", "--dataset", str(tmp_path / "missing.jsonl"), "--model", str(tiny_model),
                  *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "missing.jsonl" not in err


def test_help_says_experimental(capsys):
    assert align(["cpo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "EXPERIMENTAL" in out and "--simpo_gamma" in out and "--cpo_alpha" in out
