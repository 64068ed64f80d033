"""The shipped accelerate configs, and a real two-process DDP run on CPUs (gloo).

The DDP run is `accelerate launch --config_file ddp.yaml --num_processes 2 -m alignment.cli
dpo ...` on the tiny model, four steps, with no flag added for the CPU: align's working
defaults set ``use_cpu`` when there is no GPU, without which transformers would leave each
process training alone, on the whole dataset, instead of joining the gloo process group.
Only the main process writes the run's files; the other rank stops after saving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import alignment

CONFIGS = Path(alignment.__file__).parent / "configs" / "accelerate"
RECIPES = Path(alignment.__file__).parent / "recipes"


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero3"])
def test_accelerate_config_loads(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))  # unknown keys raise
    expected = {"ddp": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP,
                "deepspeed_zero3": DistributedType.DEEPSPEED}[name]
    assert config.distributed_type == expected and config.num_machines == 1
    if name == "fsdp":
        fsdp = config.fsdp_config
        assert fsdp["fsdp_reshard_after_forward"] == "FULL_SHARD"
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if name == "deepspeed_zero3":
        assert config.deepspeed_config["zero_stage"] == 3


def test_fsdp_wraps_the_decoder_layers_of_mistral_and_llama():
    """With no class named, the policy wraps each model's declared decoder layer."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    assert LlamaForCausalLM._no_split_modules == ["LlamaDecoderLayer"]
    assert MistralForCausalLM._no_split_modules == ["MistralDecoderLayer"]
    assert LlamaConfig and MistralConfig  # the classes a 7B recipe would load


@pytest.mark.slow
def test_two_process_cpu_ddp_run(tiny_model, tmp_path):
    from tests.helpers import write_pairs

    pairs = write_pairs(tmp_path / "pairs.jsonl", 24)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(CONFIGS / "ddp.yaml"), "--num_processes", "2",
           "-m", "alignment.cli", "dpo", "--config", str(RECIPES / "tiny_smoke.yaml"),
           "--model", str(tiny_model), "--dataset", str(pairs), "--output_dir", str(out),
           "--log_level", "info"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # both ranks loaded the data and finished; they trained as one job of world size 2:
    # 2 processes x 2 pairs per device = 4 pairs a step
    assert log.count("align dpo: 24 training pairs") == 2, log[-4000:]
    assert "Total train batch size (w. parallel, distributed & accumulation) = 4" in log
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # 4 steps x 4 pairs = 16 of the 24 pairs: two thirds of an epoch (one process alone
    # would have seen 8, a third)
    assert state["log_history"][-1]["epoch"] == pytest.approx(16 / 24)

    # one adapter, saved by the main process, trained
    from safetensors.torch import load_file

    adapters = sorted(out.rglob("adapter_model.safetensors"))
    assert adapters == [out / "adapter_model.safetensors"]
    weights = load_file(adapters[0])
    assert any(t.abs().sum() > 0 for name, t in weights.items() if "lora_B" in name)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and metrics["tokens_per_s"] > 0
    # the rank that does not write says nothing of the outputs: one summary in the log
    assert log.count("align dpo: 4 steps in") == 1, log[-4000:]
