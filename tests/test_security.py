"""Safe defaults: pickle weights are refused, remote code is never trusted, servers bind
loopback."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from alignment.cli import main as align

ROOT = Path(__file__).resolve().parent.parent


def test_pickle_only_weights_are_refused_unless_allowed(tiny_model, tmp_path, monkeypatch, capsys):
    import shutil

    import torch

    from alignment.models import ModelNotAvailable, resolve_model

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(ModelNotAvailable, match="pickle"):
        resolve_model(str(folder))
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n' * 4)
    assert align(["dpo", "--dataset", str(pairs), "--model", str(folder)]) == 2
    assert "ALIGN_ALLOW_PICKLE" in capsys.readouterr().err
    monkeypatch.setenv("ALIGN_ALLOW_PICKLE", "1")
    assert resolve_model(str(folder)) == str(folder)


def test_no_code_path_trusts_remote_code():
    """Nothing passes trust_remote_code=True: a hub model's own Python never runs."""
    offenders = []
    for path in [*ROOT.glob("alignment/**/*.py"), *ROOT.glob("pipelines/**/*.py"),
                 *ROOT.glob("annotation/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    assert offenders == []


def test_local_servers_bind_loopback_by_default():
    import inspect

    from annotation import server
    from pipelines import server as model_server

    assert inspect.signature(model_server.serve).parameters["host"].default == "127.0.0.1"
    source = inspect.getsource(server)
    assert '"0.0.0.0"' not in source and "127.0.0.1" in source
