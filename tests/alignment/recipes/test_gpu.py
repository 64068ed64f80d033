"""GPU-only paths: QLoRA (bitsandbytes 4-bit base + LoRA). Skipped without a CUDA GPU."""

from __future__ import annotations

import importlib.util

import pytest

from alignment.cli import main as align
from tests.helpers import write_pairs

torch = pytest.importorskip("torch")

gpu_only = [
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="QLoRA is a GPU feature: bitsandbytes' 4-bit CPU kernels lose LoRA "
                              "gradients, so align refuses it on CPU (tested in "
                              "tests/alignment/recipes/test_dpo.py)"),
    pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                       reason="QLoRA needs bitsandbytes: pip install 'align-rlhf[gpu]'"),
]


@pytest.mark.parametrize("command", ["dpo", "sft"])
@gpu_only[1]
@gpu_only[0]  # applied first, so a machine without a GPU is told that first
def test_qlora_trains_the_adapter_on_a_gpu(tiny_model, tmp_path, command):
    from safetensors.torch import load_file

    pairs = write_pairs(tmp_path / "pairs.jsonl", n=16)
    out = tmp_path / command
    assert align([command, "--dataset", str(pairs), "--model", str(tiny_model),
                  "--output_dir", str(out), "--load_in_4bit", "--use_peft",
                  "--max_steps", "4", "--learning_rate", "5e-3", "--save_strategy", "no",
                  "--eval_split", "0"]) == 0
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # gradients reached the adapter
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 4
