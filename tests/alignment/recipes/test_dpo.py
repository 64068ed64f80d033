"""`align dpo` end to end on a tiny model, and the refusals that come before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import ROOT, train, write_pairs


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dpo")
    out = root / "run"
    assert train(tiny_model, write_pairs(root / "pairs.jsonl"), out) == 0
    return out


def test_dpo_writes_every_artefact(run):
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json",
                 "metrics.json", "README.md", "training_curves.png", "trainer_state.json",
                 "eval_pairs.jsonl"):
        assert (run / name).exists(), name
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_dpo_trained_the_adapter(run):
    from safetensors.torch import load_file

    weights = load_file(run / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    # PEFT starts every lora_B at zero, so a non-zero one was moved by training
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)
    assert not any("lora" not in name for name in weights)  # the base is not saved


def test_dpo_metrics(run):
    m = json.loads((run / "metrics.json").read_text())
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                "rewards/accuracies"):
        assert key in m["train"] and key in m["eval"], key
    assert m["train"]["loss"] < m["train_loss_first"]  # the loss moved down
    assert m["train"]["rewards/margins"] > 0
    assert m["global_step"] == 6 and m["train_runtime_s"] > 0 and m["tokens_per_s"] > 0
    assert m["train_pairs"] + m["eval_pairs"] == 24
    config = m["config"]
    assert config["DPOConfig"]["beta"] == 0.5 and config["ModelConfig"]["use_peft"] is True
    assert config["ScriptArguments"]["dataset"][0].endswith("pairs.jsonl")


def test_dpo_model_card(run):
    card = (run / "README.md").read_text()
    assert "pairs.jsonl" in card and "| `beta` | `0.5` |" in card
    assert "AutoPeftModelForCausalLM" in card and "rewards/margins" in card


def test_qlora_on_cpu_is_refused_before_loading(tiny_model, tmp_path, capsys, monkeypatch):
    from alignment import training

    if training.has_accelerator():
        pytest.skip("QLoRA is allowed where a GPU is present")
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the configuration was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    # the dataset does not exist either: the QLoRA refusal must come first
    code = align(["dpo", "--dataset", str(tmp_path / "missing.jsonl"), "--model", str(tiny_model),
                  "--load_in_4bit"])
    assert code == 2
    err = capsys.readouterr().err
    assert "QLoRA" in err and "GPU" in err and "missing.jsonl" not in err


def test_malformed_dataset_names_file_row_and_field(tiny_model, tmp_path, capsys, monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    path = write_pairs(tmp_path / "bad.jsonl", n=4)
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({"prompt": "hi", "chosen": "hello"})  # row 3 lacks `rejected`
    path.write_text("\n".join(lines) + "\n")
    assert align(["dpo", "--dataset", str(path), "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "3" in err and "rejected" in err


def test_eval_strategy_without_eval_data_is_refused(tiny_model, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "p.jsonl", n=4)
    code = align(["dpo", "--dataset", str(pairs), "--model", str(tiny_model),
                  "--eval_split", "0", "--eval_strategy", "steps"])
    assert code == 2 and "nothing to evaluate" in capsys.readouterr().err


def test_help_exits_cleanly(capsys):
    assert align(["dpo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--dataset" in out and "--beta" in out and "--lora_r" in out


@pytest.mark.slow
def test_dpo_on_bundled_smollm2(smollm2, tmp_path):
    out = tmp_path / "run"
    code = align(["dpo", "--config", str(ROOT / "alignment" / "recipes" /
                                         "dpo_cpu.yaml"),
                  "--dataset", str(write_pairs(tmp_path / "pairs.jsonl", n=12)),
                  "--output-dir", str(out), "--max_steps", "2", "--logging_steps", "1",
                  "--eval_strategy", "no", "--save_strategy", "no", "--max_length", "64",
                  "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["global_step"] == 2 and "rewards/margins" in m["eval"]
    assert (out / "adapter_model.safetensors").exists()
