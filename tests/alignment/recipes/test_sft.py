"""`align sft` end to end on tiny models: training, the chat template applied once, the
assistant-only loss, refusals before loading, and SmolLM2 SFT -> DPO (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import write_chats


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sft")
    out = root / "run"
    assert align(["sft", "--dataset", str(write_chats(root / "chats.jsonl")),
                  "--model", str(tiny_model), "--output_dir", str(out), "--max_steps", "6",
                  "--learning_rate", "5e-3", "--logging_steps", "1", "--eval_steps", "3",
                  "--save_strategy", "no"]) == 0
    return out


def test_sft_writes_every_artefact(run):
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json",
                 "metrics.json", "README.md", "training_curves.png", "trainer_state.json"):
        assert (run / name).exists(), name
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    card = (run / "README.md").read_text()
    assert "| dataset | conversations |" in card and "chats.jsonl" in card


def test_sft_trained_the_adapter_and_the_loss_fell(run):
    from safetensors.torch import load_file

    weights = load_file(run / "adapter_model.safetensors")
    # PEFT starts every lora_B at zero, so a non-zero one was moved by training
    assert any(t.abs().sum() > 0 for name, t in weights.items() if "lora_B" in name)
    m = json.loads((run / "metrics.json").read_text())
    assert m["train"]["loss"] < m["train_loss_first"]
    assert "loss" in m["eval"] and m["global_step"] == 6
    assert m["train_conversations"] + m["eval_conversations"] == 16
    assert "last assistant reply" in m["loss_on"]


def capture_train_dataset(monkeypatch) -> dict:
    """Record the dataset SFTTrainer actually trains on (the real trainer still runs)."""
    from trl import SFTTrainer

    seen: dict = {}
    original = SFTTrainer.train

    def train(self, *args, **kwargs):
        seen["dataset"], seen["tokenizer"] = self.train_dataset, self.processing_class
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "train", train)
    return seen


@pytest.mark.parametrize("model_fixture", ["tiny_model", "tiny_bos_model"])
def test_chat_template_applied_once(model_fixture, request, tmp_path, monkeypatch):
    model = request.getfixturevalue(model_fixture)
    seen = capture_train_dataset(monkeypatch)
    assert align(["sft", "--dataset", str(write_chats(tmp_path / "c.jsonl", n=4)),
                  "--model", str(model), "--output_dir", str(tmp_path / "out"),
                  "--max_steps", "1", "--eval_split", "0", "--save_strategy", "no"]) == 0
    tok = seen["tokenizer"]
    for row in seen["dataset"]:
        ids = row["input_ids"]
        text = tok.decode(ids)
        if tok.bos_token in ("<s>",):  # a template that starts with BOS
            assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, text
        assert ids[:2] != [tok.bos_token_id] * 2, text
        # one end-of-turn per message that the template closes, never two in a row
        assert all(not (a == b == tok.eos_token_id) for a, b in zip(ids, ids[1:])), text
        if tok.bos_token == "<s>":
            assert ids[-1] == tok.eos_token_id and text.count("</s>") == text.count("[/INST]")
        else:
            assert text.count("<|im_end|>") == text.count("<|im_start|>")
        # completion-only: the prompt is masked, the reply (with its end token) is not
        labels = row["labels"]
        assert labels[0] == -100 and labels[-1] == ids[-1]
        reply = tok.decode([t for t in labels if t != -100])
        assert "[INST]" not in reply and "user" not in reply


def test_malformed_dataset_fails_before_loading(tiny_model, tmp_path, capsys, monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "hi", "answer": "hello"}) + "\n")
    assert align(["sft", "--dataset", str(bad), "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "format" in err


def test_contradictory_loss_flags_are_refused(tiny_model, tmp_path, capsys):
    code = align(["sft", "--dataset", str(write_chats(tmp_path / "c.jsonl", n=4)),
                  "--model", str(tiny_model), "--assistant_only_loss", "true",
                  "--completion_only", "false"])
    assert code == 2 and "contradicts" in capsys.readouterr().err


def test_help_lists_sft_and_model_fields(capsys):
    assert align(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--dataset", "--packing", "--assistant_only_loss", "--lora_r", "--completion_only"):
        assert flag in out, flag


@pytest.mark.slow
def test_smollm2_sft_then_dpo(smollm2, tmp_path):
    """The handbook path on the bundled model: SFT (full weights) then DPO (LoRA) on top."""
    from tests.helpers import write_pairs

    sft_out = tmp_path / "sft"
    assert align(["sft", "--dataset", str(write_chats(tmp_path / "chats.jsonl", n=8)),
                  "--model", str(smollm2), "--output_dir", str(sft_out), "--use_peft", "false",
                  "--learning_rate", "1e-5", "--max_steps", "2", "--per_device_train_batch_size",
                  "2", "--max_length", "96", "--eval_split", "0", "--logging_steps", "1",
                  "--save_strategy", "no"]) == 0
    assert (sft_out / "model.safetensors").exists()
    dpo_out = tmp_path / "dpo"
    assert align(["dpo", "--dataset", str(write_pairs(tmp_path / "pairs.jsonl", n=8)),
                  "--model", str(sft_out), "--output_dir", str(dpo_out), "--max_steps", "2",
                  "--per_device_train_batch_size", "2", "--max_length", "96",
                  "--eval_split", "0", "--logging_steps", "1", "--save_strategy", "no"]) == 0
    m = json.loads((dpo_out / "metrics.json").read_text())
    assert m["global_step"] == 2 and "rewards/margins" in m["train"]
    adapter = json.loads((dpo_out / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == sft_out.resolve()
