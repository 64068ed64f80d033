"""`align rm` on a tiny model: a trained score head, a merged folder that loads as a reward
model, held-out accuracy in metrics and card, and refusals before loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import DATASETS, write_pairs


def train_rm(model: Path, pairs: Path, out: Path, *extra: str) -> int:
    return align(["rm", "--dataset", str(pairs), "--model", str(model), "--output_dir", str(out),
                  "--max_steps", "6", "--learning_rate", "5e-3", "--logging_steps", "1",
                  "--eval_steps", "3", "--eval_split", "0.25", "--save_strategy", "no", *extra])


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rm")
    out = root / "run"
    assert train_rm(tiny_model, write_pairs(root / "pairs.jsonl"), out) == 0
    return out


def test_rm_writes_a_full_model_and_its_adapter(run):
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "metrics.json",
                 "README.md", "training_curves.png", "eval_pairs.jsonl",
                 "adapter/adapter_model.safetensors", "adapter/adapter_config.json"):
        assert (run / name).exists(), name
    config = json.loads((run / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in adapter["modules_to_save"]


def test_rm_trained_head_and_adapters(run):
    from safetensors.torch import load_file

    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for n, t in weights.items() if "lora_B" in n)
    assert any("score" in n for n in weights)  # the head is saved: it was trained in full
    m = json.loads((run / "metrics.json").read_text())
    assert m["train"]["loss"] < m["train_loss_first"]
    assert m["heldout_pairs_scored"] == 6 and m["heldout_accuracy"] == 1.0
    assert m["heldout_margin"] > 0
    card = (run / "README.md").read_text()
    assert "Held-out accuracy" in card and "AutoModelForSequenceClassification" in card


def test_rm_output_scores_chosen_above_rejected(run):
    """What a reward-model scorer does: load the folder as is and score conversations."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run).eval()
    tok = AutoTokenizer.from_pretrained(run)

    def score(answer: str) -> float:
        ids = tok.apply_chat_template(
            [{"role": "user", "content": "Translate hello into Spanish."},
             {"role": "assistant", "content": answer}], return_dict=True, return_tensors="pt")
        with torch.no_grad():
            return model(**ids).logits[0, 0].item()

    assert score("The answer is correct and concise.") > score("dog")


def test_rm_refuses_a_causal_lm_task_type(tiny_model, tmp_path, capsys):
    code = align(["rm", "--dataset", str(write_pairs(tmp_path / "p.jsonl", n=4)),
                  "--model", str(tiny_model), "--lora_task_type", "CAUSAL_LM"])
    assert code == 2 and "SEQ_CLS" in capsys.readouterr().err


def test_rm_refuses_unpaired_data_before_loading(tiny_model, tmp_path, capsys, monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", no_load)
    kto = DATASETS / "trl_kto.jsonl"
    assert align(["rm", "--dataset", str(kto), "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert "trl_kto.jsonl" in err and "preference" in err


def test_rm_help(capsys):
    assert align(["rm", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--center_rewards_coefficient" in out and "--lora_modules_to_save" in out
