"""Annotators from a small YAML or JSON file, created in Argilla and given one workspace.

    workspace: team-a            # optional; --workspace wins
    users:
      - username: alice
        role: annotator          # annotator (default), admin or owner
        password_env: ALICE_PASSWORD        # the password is read from this env var
      - username: bob
        password_file: secrets/bob.txt      # or from a file only its owner can read

Passwords never live in the users file itself. A user is only ever added to the
dataset's workspace, so annotators see that workspace's datasets and nothing else.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import ConfigError

ROLES = ("annotator", "admin", "owner")
MIN_PASSWORD = 8  # Argilla's own minimum


@dataclass(frozen=True)
class UserSpec:
    username: str
    role: str
    password: str

    def __repr__(self) -> str:
        return f"UserSpec(username={self.username!r}, role={self.role!r})"


def _password(path: Path, i: int, entry: dict) -> str:
    where = f"{path}: users[{i}] ({entry.get('username')})"
    if "password" in entry:
        raise ConfigError(f"{where}: do not write passwords in the users file; use "
                          "password_env (an environment variable) or password_file")
    if entry.get("password_env"):
        value = os.environ.get(entry["password_env"])
        if not value:
            raise ConfigError(f"{where}: environment variable {entry['password_env']} is not set")
    elif entry.get("password_file"):
        secret = Path(entry["password_file"])
        if not secret.is_absolute():
            secret = path.parent / secret
        if not secret.exists():
            raise ConfigError(f"{where}: password_file {secret} does not exist")
        mode = stat.S_IMODE(secret.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{where}: {secret} is readable by others (mode {mode:o}); "
                              f"run `chmod 600 {secret}`")
        value = secret.read_text().strip()
    else:
        raise ConfigError(f"{where}: give password_env or password_file")
    if len(value) < MIN_PASSWORD:
        raise ConfigError(f"{where}: password shorter than {MIN_PASSWORD} characters")
    return value


def load_users(path: str | os.PathLike) -> tuple[str | None, list[UserSpec]]:
    """(workspace named in the file or None, users)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if isinstance(data, list):
        data = {"users": data}
    if not isinstance(data, dict) or not isinstance(data.get("users"), list):
        raise ConfigError(f"{path}: expected a `users:` list (see `align annotate push --help`)")
    unknown = set(data) - {"users", "workspace"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: users, workspace")
    users = []
    for i, entry in enumerate(data["users"]):
        if not isinstance(entry, dict) or not entry.get("username"):
            raise ConfigError(f"{path}: users[{i}] needs a username")
        extra = set(entry) - {"username", "role", "password_env", "password_file", "password"}
        if extra:
            raise ConfigError(f"{path}: users[{i}]: unknown keys {sorted(extra)}")
        role = entry.get("role", "annotator")
        if role not in ROLES:
            raise ConfigError(f"{path}: users[{i}]: role {role!r} is not one of {ROLES}")
        users.append(UserSpec(str(entry["username"]), role, _password(path, i, entry)))
    return data.get("workspace"), users


def ensure_users(client, workspace: dict, users: list[UserSpec]) -> dict[str, str]:
    """Create missing users and add each to the workspace; {username: "created"|"exists"}."""
    existing = {u["username"]: u for u in client.users()}
    out = {}
    for spec in users:
        user = existing.get(spec.username)
        if user is None:
            user = client.create_user(spec.username, spec.password, spec.role)
            out[spec.username] = "created"
        else:
            out[spec.username] = "exists"
        client.add_to_workspace(workspace["id"], user["id"])
    return out
