"""DoRA and rsLoRA through `align sft` and `align dpo`: TRL's ``--use_dora`` / ``--use_rslora``
(ModelConfig fields) reach PEFT's LoraConfig, and the saved adapter is what they ask for.

DoRA splits each adapted weight into a direction (the LoRA-updated matrix) and a trained
per-row magnitude, saved as ``lora_magnitude_vector``; PEFT starts it at the row norms of
the base weight, so a magnitude that differs from them was moved by training. rsLoRA
scales the update by ``lora_alpha / sqrt(r)`` instead of ``lora_alpha / r``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import write_pairs
from tests.helpers import write_chats

R, ALPHA = 16, 32  # align's LoRA working defaults


def sft(model: Path, out: Path, *extra: str) -> Path:
    assert align(["sft", "--dataset", str(write_chats(out.parent / "chats.jsonl", n=8)),
                  "--model", str(model), "--output_dir", str(out), "--max_steps", "3",
                  "--learning_rate", "5e-3", "--eval_split", "0", "--save_strategy", "no",
                  "--logging_steps", "1", *extra]) == 0
    return out


def dpo(model: Path, out: Path, *extra: str) -> Path:
    assert align(["dpo", "--dataset", str(write_pairs(out.parent / "pairs.jsonl", n=8)),
                  "--model", str(model), "--output_dir", str(out), "--max_steps", "3",
                  "--learning_rate", "5e-3", "--eval_split", "0", "--save_strategy", "no",
                  "--logging_steps", "1", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def sft_dora(tiny_model, tmp_path_factory) -> Path:
    return sft(tiny_model, tmp_path_factory.mktemp("sft_dora") / "run", "--use_dora", "true")


@pytest.fixture(scope="module")
def sft_rslora(tiny_model, tmp_path_factory) -> Path:
    return sft(tiny_model, tmp_path_factory.mktemp("sft_rslora") / "run", "--use_rslora", "true")


@pytest.fixture(scope="module")
def dpo_both(tiny_model, tmp_path_factory) -> Path:
    return dpo(tiny_model, tmp_path_factory.mktemp("dpo_both") / "run", "--use_dora", "true",
               "--use_rslora", "true")


def adapter_config(run: Path) -> dict:
    return json.loads((run / "adapter_config.json").read_text())


def assert_magnitudes_trained(run: Path, base: Path) -> None:
    """Every adapted layer has a DoRA magnitude; it started at the base rows' norms and
    training moved it."""
    from safetensors.torch import load_file

    adapter = load_file(run / "adapter_model.safetensors")
    weights = load_file(base / "model.safetensors")
    lora_a = {k.removesuffix(".lora_A.weight") for k in adapter if k.endswith(".lora_A.weight")}
    magnitudes = {k.removesuffix(".lora_magnitude_vector"): v for k, v in adapter.items()
                  if k.endswith(".lora_magnitude_vector")}
    assert lora_a and set(magnitudes) == lora_a
    moved = 0
    for layer, magnitude in magnitudes.items():
        start = weights[layer.removeprefix("base_model.model.") + ".weight"].float().norm(dim=1)
        assert magnitude.shape == start.shape, layer
        change = (magnitude.float() - start).abs().max() / start.abs().max()
        assert change < 0.5, layer  # the same layer, a few small steps away from its start
        moved += bool(change > 1e-4)
    assert moved > 0


def assert_rslora_scaling(run: Path, base: Path) -> None:
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), run)
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    assert layers
    for layer in layers:
        assert layer.scaling["default"] == pytest.approx(ALPHA / math.sqrt(R))
        assert layer.scaling["default"] != pytest.approx(ALPHA / R)


def test_sft_use_dora_saves_trained_magnitudes(sft_dora, tiny_model):
    config = adapter_config(sft_dora)
    assert config["use_dora"] is True and config["use_rslora"] is False
    assert_magnitudes_trained(sft_dora, tiny_model)
    m = json.loads((sft_dora / "metrics.json").read_text())
    assert m["config"]["ModelConfig"]["use_dora"] is True


def test_sft_use_rslora_scales_by_the_square_root_of_the_rank(sft_rslora, tiny_model):
    config = adapter_config(sft_rslora)
    assert config["use_rslora"] is True and config["use_dora"] is False
    assert (config["r"], config["lora_alpha"]) == (R, ALPHA)
    assert_rslora_scaling(sft_rslora, tiny_model)


def test_dpo_accepts_both(dpo_both, tiny_model):
    config = adapter_config(dpo_both)
    assert config["use_dora"] is True and config["use_rslora"] is True
    assert_magnitudes_trained(dpo_both, tiny_model)
    assert_rslora_scaling(dpo_both, tiny_model)
    m = json.loads((dpo_both / "metrics.json").read_text())
    assert m["train"]["loss"] < m["train_loss_first"]


def test_plain_lora_has_neither(tiny_model, tmp_path):
    """The control: without the flags the adapter is plain LoRA (alpha / r, no magnitudes)."""
    from safetensors.torch import load_file

    run = sft(tiny_model, tmp_path / "run")
    config = adapter_config(run)
    assert config["use_dora"] is False and config["use_rslora"] is False
    assert not any("magnitude" in k for k in load_file(run / "adapter_model.safetensors"))
