"""Safe defaults: pickle weights are refused, remote code is never trusted, servers bind
loopback."""

from __future__ import annotations

import ast

import pytest

from alignment.cli import main as align
from tests.helpers import ROOT


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


def test_a_network_host_is_warned_about_and_refused_with_the_demo_password(tmp_path, capsys):
    from alignment.cli import main as align
    from annotation import server

    assert server.check_host("127.0.0.1", demo=True) is None
    assert server.check_host("::1", demo=False) is None
    assert "reachable from other machines" in server.check_host("0.0.0.0", demo=False)
    # refused before anything starts: no server home is even created
    home = tmp_path / "argilla"
    assert align(["annotate", "serve", "--home", str(home), "--host", "0.0.0.0", "--demo"]) == 2
    assert "well-known password" in capsys.readouterr().err and not home.exists()
    assert align(["annotate", "serve", "--home", str(home), "--host", "my-laptop"]) == 2
    assert "IP address" in capsys.readouterr().err and not home.exists()


def test_the_running_annotation_server_listens_on_loopback_only(argilla_server):
    """Read the kernel's own table of listening sockets for the server's port."""
    port = int(argilla_server.url.rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hexport = local.rsplit(":", 1)
                if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                    listening.append(addr)
    # 0100007F is 127.0.0.1 in the kernel's byte order
    assert listening == ["0100007F"], listening


def test_no_secret_reaches_the_servers_logs_or_state(argilla_server):
    """The owner's password and API key live in credentials.json (0600) and nowhere else."""
    import json

    creds = json.loads((argilla_server.home / "credentials.json").read_text())
    secrets = [creds["password"], creds["api_key"]]
    files = [p for p in argilla_server.home.rglob("*")
             if p.is_file() and p.name != "credentials.json" and p.suffix in
             (".log", ".json", ".pid", ".txt", "")]
    assert any(p.suffix == ".log" for p in files)
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        assert not any(s in text for s in secrets), f"a secret is in {path}"
