"""`align kto`, `align orpo` and DPO's loss variants (`align dpo --loss_type`) on a tiny
model, plus the refusals that come before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import write_pairs


def train(command: str, model: Path, data: Path, out: Path, *extra: str) -> int:
    return align([command, "--dataset", str(data), "--model", str(model), "--output_dir", str(out),
                  "--max_steps", "4", "--learning_rate", "5e-3", "--logging_steps", "1",
                  "--eval_steps", "4", "--save_strategy", "no", *extra])


def check_trained(out: Path) -> dict:
    from safetensors.torch import load_file

    for name in ("adapter_model.safetensors", "metrics.json", "README.md", "training_curves.png"):
        assert (out / name).exists(), name
    weights = load_file(out / "adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for n, t in weights.items() if "lora_B" in n)
    m = json.loads((out / "metrics.json").read_text())
    assert m["global_step"] == 4 and m["train"]["loss"] != m["train_loss_first"]
    return m


def test_kto_unpairs_preference_pairs(tiny_model, tmp_path):
    out = tmp_path / "kto"
    assert train("kto", tiny_model, write_pairs(tmp_path / "pairs.jsonl"), out) == 0
    m = check_trained(out)
    # 24 pairs -> 48 rows, 10% held out; half of them desirable
    assert m["train_rows"] + m["eval_rows"] == 48 and 0 < m["train_desirable"] < m["train_rows"]
    assert m["train"]["loss"] < m["train_loss_first"]
    assert "rewards/chosen" in m["train"] and "kl" in m["train"] and "loss" in m["eval"]


def test_orpo_answers_end_on_one_eos(tiny_model, tmp_path, monkeypatch):
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOTrainer

    seen = {}
    original = ORPOTrainer.train

    def spy(self, *args, **kwargs):
        seen["dataset"], seen["eos"] = self.train_dataset, self.processing_class.eos_token_id
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ORPOTrainer, "train", spy)
    out = tmp_path / "orpo"
    assert train("orpo", tiny_model, write_pairs(tmp_path / "pairs.jsonl"), out) == 0
    m = check_trained(out)
    assert "rewards/accuracies" in m["train"] and "log_odds_ratio" in m["train"]
    assert "experimental" in (out / "README.md").read_text()
    eos = seen["eos"]
    for row in seen["dataset"]:
        for key in ("chosen_input_ids", "rejected_input_ids"):
            ids = row[key]
            assert ids[-1] == eos and ids[-2] != eos and ids.count(eos) == 2  # user turn + answer


@pytest.mark.parametrize("loss_type", ["ipo", "hinge"])
def test_dpo_loss_variants(loss_type, tiny_model, tmp_path):
    out = tmp_path / loss_type
    assert train("dpo", tiny_model, write_pairs(tmp_path / "pairs.jsonl", n=12), out,
                 "--loss_type", loss_type) == 0
    m = check_trained(out)
    assert m["config"]["DPOConfig"]["loss_type"] == [loss_type]
    assert m["train"]["rewards/margins"] > 0


def test_kto_refuses_batch_of_one_before_loading(tiny_model, tmp_path, capsys, monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the configuration was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    code = align(["kto", "--dataset", str(write_pairs(tmp_path / "p.jsonl", n=4)),
                  "--model", str(tiny_model), "--per_device_train_batch_size", "1"])
    assert code == 2 and "at least 2" in capsys.readouterr().err


def test_kto_refuses_one_sided_feedback(tiny_model, tmp_path, capsys, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("model loaded before the data was checked"))
    rows = tmp_path / "good.jsonl"
    rows.write_text("".join(json.dumps({"prompt": "hi", "completion": f"hello {i}",
                                        "label": True}) + "\n" for i in range(4)))
    assert align(["kto", "--dataset", str(rows), "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert "good.jsonl" in err and "desirable" in err


def test_orpo_malformed_dataset_names_file_row_and_field(tiny_model, tmp_path, capsys):
    path = write_pairs(tmp_path / "bad.jsonl", n=4)
    lines = path.read_text().splitlines()
    lines[1] = json.dumps({"prompt": "hi", "chosen": 3, "rejected": "no"})
    path.write_text("\n".join(lines) + "\n")
    assert align(["orpo", "--dataset", str(path), "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl row 2" in err and "chosen" in err


def test_orpo_and_kto_help(capsys):
    assert align(["orpo", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "experimental" in out and "--beta" in out
    assert align(["kto", "--help"]) == 0
    assert "--desirable_weight" in capsys.readouterr().out
