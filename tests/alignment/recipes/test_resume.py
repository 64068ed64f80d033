"""An interrupted `align sft` run, resumed from its checkpoint, ends exactly where an
uninterrupted run with the same seed ends: same adapter weights, same last loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import write_chats


class Interrupted(Exception):
    """Stands for the process dying (pre-emption, Ctrl-C) right after a checkpoint."""


def sft(model: Path, data: Path, out: Path, *extra: str) -> int:
    return align(["sft", "--dataset", str(data), "--model", str(model), "--output_dir", str(out),
                  "--max_steps", "6", "--learning_rate", "5e-3", "--logging_steps", "1",
                  "--eval_split", "0", "--per_device_train_batch_size", "2", "--seed", "7",
                  "--save_strategy", "steps", "--save_steps", "3", *extra])


def last_loss(out: Path) -> float:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [e["loss"] for e in history if "loss" in e][-1]


def test_resume_ends_where_an_uninterrupted_run_ends(tiny_model, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import Trainer
    import torch

    data = write_chats(tmp_path / "chats.jsonl", n=12)
    straight = tmp_path / "straight"
    assert sft(tiny_model, data, straight) == 0

    # the second run dies just after writing checkpoint-3 (of 6 steps)
    interrupted = tmp_path / "interrupted"
    save = Trainer._save_checkpoint

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        if self.state.global_step == 3:
            raise Interrupted

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        sft(tiny_model, data, interrupted)
    monkeypatch.undo()
    assert (interrupted / "checkpoint-3").is_dir()
    assert not (interrupted / "adapter_model.safetensors").exists()
    halfway = load_file(interrupted / "checkpoint-3" / "adapter_model.safetensors")

    assert sft(tiny_model, data, interrupted, "--resume_from_checkpoint", "latest") == 0
    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(interrupted / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert any(not torch.equal(b[k], halfway[k]) for k in b)  # the resumed half trained
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert last_loss(straight) == pytest.approx(last_loss(interrupted), abs=1e-5)
    m = json.loads((interrupted / "metrics.json").read_text())
    assert m["global_step"] == 6


def test_resume_without_a_checkpoint_is_refused(tiny_model, tmp_path, capsys):
    data = write_chats(tmp_path / "chats.jsonl", n=4)
    assert sft(tiny_model, data, tmp_path / "empty", "--resume_from_checkpoint", "latest") == 2
    assert "no checkpoint-*" in capsys.readouterr().err
    assert sft(tiny_model, data, tmp_path / "o", "--resume_from_checkpoint",
               str(tmp_path / "nowhere")) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err


def test_latest_skips_a_checkpoint_cut_off_while_being_written(tmp_path, capsys):
    from types import SimpleNamespace

    from alignment.training.config import resume_checkpoint

    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_st')):  # 4: killed mid-write
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
        (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-10").mkdir()  # killed before anything was written
    args = SimpleNamespace(resume_from_checkpoint="latest", output_dir=str(tmp_path))
    assert resume_checkpoint(args) == str(tmp_path / "checkpoint-2")
    assert "checkpoint-4, checkpoint-10 cut off" in capsys.readouterr().out
    (tmp_path / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(Exception, match="no complete checkpoint"):
        resume_checkpoint(args)
