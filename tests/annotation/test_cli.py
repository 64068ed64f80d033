"""`align annotate` options and the users file, without a server."""

from __future__ import annotations

import json
import os

import pytest

from alignment.errors import ConfigError, DataError
from annotation.cli import main
from annotation.records import check_rows
from annotation.users import load_users


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in (
    "serve", "stop", "status", "reindex", "push", "pull", "calibrate")]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: align annotate" in capsys.readouterr().out


def test_status_of_a_home_with_no_server(tmp_path, capsys):
    assert main(["status", "--home", str(tmp_path)]) == 1
    assert "running: nothing" in capsys.readouterr().out


def test_push_without_a_server_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    rows = tmp_path / "r.jsonl"
    rows.write_text(json.dumps({"id": "a", "prompt": "p", "responses": ["x", "y"],
                                "scores": [1, 2]}) + "\n")
    with pytest.raises(ConfigError, match="align annotate serve"):
        main(["push", str(rows), "--dataset-name", "d", "--home", str(tmp_path)])
    monkeypatch.setenv("ARGILLA_API_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ARGILLA_API_KEY"):
        main(["push", str(rows), "--dataset-name", "d"])


def test_users_file_reads_passwords_from_env_or_private_files(tmp_path, monkeypatch):
    secret = tmp_path / "bob.txt"
    secret.write_text("bob-password-1\n")
    os.chmod(secret, 0o600)
    users = tmp_path / "users.yaml"
    users.write_text("workspace: team\nusers:\n"
                     "  - {username: alice, password_env: ALICE_PW}\n"
                     "  - {username: bob, role: admin, password_file: bob.txt}\n")
    monkeypatch.setenv("ALICE_PW", "alice-password-1")
    workspace, specs = load_users(users)
    assert workspace == "team"
    assert [(u.username, u.role, u.password) for u in specs] == [
        ("alice", "annotator", "alice-password-1"), ("bob", "admin", "bob-password-1")]
    assert "password-1" not in repr(specs)
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_users(users)
    users.write_text("users:\n  - {username: carol, password: hunter22}\n")
    with pytest.raises(ConfigError, match="do not write passwords"):
        load_users(users)
    monkeypatch.delenv("ALICE_PW")
    users.write_text("users:\n  - {username: alice, password_env: ALICE_PW}\n")
    with pytest.raises(ConfigError, match="ALICE_PW is not set"):
        load_users(users)


def test_rows_must_share_a_shape():
    row = {"id": "a", "prompt": "p", "responses": ["x", "y"]}
    assert check_rows([row], "f.jsonl") == 2
    with pytest.raises(DataError, match="different numbers of responses"):
        check_rows([row, {**row, "id": "b", "responses": ["x", "y", "z"]}], "f.jsonl")
    with pytest.raises(DataError, match="row 2: field `id`"):
        check_rows([row, row], "f.jsonl")
    with pytest.raises(DataError, match="conversations"):
        check_rows([row, {**row, "id": "c", "prompt": [{"role": "user", "content": "p"}]}],
                   "f.jsonl")
