"""A local Argilla server: its home folder, credentials, and the four processes
(Redis, the web server, the background worker) started, watched and stopped.

Everything lives in one home folder (default ``align_home()/argilla``), so a
restart keeps all data:

    argilla.db               Argilla's SQLite database
    search-index.sqlite3     the embedded search index (rebuildable: ``align annotate reindex``)
    credentials.json         the owner's username, password and API key (mode 0600)
    redis/                   Redis's data
    logs/                    one log per process
    run/                     PID files and state.json (ports, URL)
    tmp/                     TMPDIR of every process (Argilla copies its UI there)

For a real deployment (Elasticsearch/OpenSearch and PostgreSQL) none of this runs:
``push``/``pull`` take ``--url`` or ``ARGILLA_API_URL`` and ``ARGILLA_API_KEY``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import AlignError, ConfigError
from alignment.models import align_home

DEFAULT_PORT = 6900
DEMO_USERNAME, DEMO_PASSWORD, DEMO_API_KEY = "argilla", "12345678", "argilla.apikey"
PROCESSES = ("web", "worker", "redis")


class ServerError(AlignError):
    """The local server could not start, or is not running."""


def default_home() -> Path:
    return Path(os.environ.get("ALIGN_ARGILLA_HOME") or align_home() / "argilla")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    api_key: str
    source: str  # where they came from, for messages (never the secrets)

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"Credentials(username={self.username!r}, source={self.source!r})"


@dataclass(frozen=True)
class ServerHome:
    root: Path

    @property
    def credentials_file(self) -> Path:
        return self.root / "credentials.json"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None


# -- credentials ------------------------------------------------------------------
ENV_USERNAME, ENV_PASSWORD, ENV_API_KEY = (
    "ALIGN_ARGILLA_USERNAME", "ALIGN_ARGILLA_PASSWORD", "ALIGN_ARGILLA_API_KEY")


def read_secret_file(path: Path) -> dict:
    """A JSON file of secrets, refused unless only its owner can read it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path}: holds secrets but is readable by others "
                          f"(mode {mode:o}); run `chmod 600 {path}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def write_secret_file(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def owner_credentials(home: ServerHome, *, demo: bool = False,
                      create: bool = False) -> Credentials:
    """Env vars first, then the home's credentials file; ``create`` writes a file of
    fresh random secrets when neither exists."""
    env = [os.environ.get(k) for k in (ENV_USERNAME, ENV_PASSWORD, ENV_API_KEY)]
    if all(env):
        return Credentials(*env, source="environment")
    if any(env):
        raise ConfigError(f"set all of {ENV_USERNAME}, {ENV_PASSWORD} and {ENV_API_KEY}, "
                          "or none of them to use the credentials file")
    if demo:
        return Credentials(DEMO_USERNAME, DEMO_PASSWORD, DEMO_API_KEY, source="--demo")
    path = home.credentials_file
    if not path.exists():
        if not create:
            raise ConfigError(f"no credentials: {path} does not exist; run `align annotate "
                              f"serve` once, or set {ENV_USERNAME}/{ENV_PASSWORD}/{ENV_API_KEY}")
        write_secret_file(path, {"username": "owner", "password": secrets.token_urlsafe(18),
                                 "api_key": "align." + secrets.token_urlsafe(32)})
    data = read_secret_file(path)
    missing = [k for k in ("username", "password", "api_key") if not data.get(k)]
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)}")
    return Credentials(data["username"], data["password"], data["api_key"], source=str(path))


# -- processes --------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def _read_pid(home: ServerHome, name: str) -> int | None:
    pid = _recorded_pid(home, name)
    return pid if pid is not None and _alive(pid) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn(home: ServerHome, name: str, cmd: list[str], env: dict, detach: bool) -> int:
    log = open(home.logs / f"{name}.log", "ab")
    # the web server leads a process group of its own either way, so that `stop` finds
    # its worker processes by group even after the master was killed
    group = None if detach or name != "web" else 0
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=home.root, start_new_session=detach,
                            process_group=group)
    log.close()
    home.pid_file(name).write_text(str(proc.pid))
    return proc.pid


def _process_env(home: ServerHome, creds: Credentials, redis_port: int) -> dict:
    env = dict(os.environ)
    env.update({
        "ARGILLA_HOME_PATH": str(home.root),
        "ARGILLA_SEARCH_ENGINE": "align-sqlite",
        "ARGILLA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        # Argilla copies its 14 MB UI into a fresh temp folder per process, never removed
        "TMPDIR": str(home.tmp),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        ENV_USERNAME: creds.username, ENV_PASSWORD: creds.password, ENV_API_KEY: creds.api_key,
        # the key that signs sign-in tokens: Argilla draws a random one per process, so
        # with several web processes a token from one would be refused by the others,
        # and every restart would sign everyone out
        "ARGILLA_AUTH_SECRET_KEY": token_secret(home),
        "PYTHONUNBUFFERED": "1",
    })
    # the children import `annotation` from wherever this process did
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def token_secret(home: ServerHome) -> str:
    """The server's token-signing key, made once and kept (mode 0600) in the home."""
    path = home.root / "token-secret.json"
    if not path.exists():
        write_secret_file(path, {"secret": secrets.token_hex(32)})
    secret = read_secret_file(path).get("secret")
    if not secret:
        raise ConfigError(f"{path}: no 'secret'; delete the file and start again")
    return secret


def _healthy(url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/api/v1/version", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def status(home: ServerHome) -> dict:
    """Which processes run, the URL, and whether the server answers."""
    pids = {name: _read_pid(home, name) for name in PROCESSES}
    state = home.state() or {}
    url = state.get("url")
    return {"home": str(home.root), "url": url, "pids": pids,
            "healthy": bool(url and pids["web"] and _healthy(url))}


LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Only this machine can reach a server bound to ``host``."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, demo: bool) -> str | None:
    """A warning for a server other machines can reach (None on loopback); the demo's
    well-known password is refused there outright."""
    import ipaddress

    if is_loopback(host):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ServerError(f"--host {host!r}: give an IP address to bind (127.0.0.1, the "
                          "default, or 0.0.0.0 for every interface)") from None
    if demo:
        raise ServerError(f"--host {host} with --demo would let anyone on the network sign in "
                          "with the demo's well-known password; drop --demo (a private "
                          "password is generated) or keep the default host 127.0.0.1")
    return (f"WARNING: --host {host}: Argilla is reachable from other machines on port {{port}}, "
            "over plain HTTP. Anyone who reaches it can try to sign in; keep the "
            "credentials file private and put the server behind a firewall or a TLS proxy.")


def web_workers(value: int | str | None = None) -> int:
    """How many web server processes to run: ``value``, else ``ALIGN_ARGILLA_WEB_WORKERS``,
    else two where there are two cores or more.

    Argilla checks every record of a bulk upsert in Python (a pydantic adapter built per
    metadata value), so one web process spends a core on it and a push cannot go faster
    than that core. Two processes, sharing the SQLite database and the search index
    (both safe across processes), take two batches at once: 2.2x the push throughput
    at 10,000 records here (bench/annotation.py). More than the cores only adds memory (about 200 MB each)."""
    raw = value if value is not None else os.environ.get("ALIGN_ARGILLA_WEB_WORKERS")
    if raw in (None, ""):
        return 2 if (os.cpu_count() or 1) >= 2 else 1
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"web workers {raw!r}: give a whole number of processes, 1 or more")
    return n


def start(home: ServerHome, *, port: int = DEFAULT_PORT, demo: bool = False,
          detach: bool = True, timeout: float = 180.0, host: str = LOOPBACK,
          workers: int | None = None) -> dict:
    """Start Redis, the worker and the web server; return once the server answers.
    With ``detach`` the processes outlive this one (stop them with ``stop``). The web
    server binds ``host`` (loopback unless asked: see :func:`check_host`); Redis always
    binds loopback. ``workers``: web server processes (see :func:`web_workers`)."""
    check_host(host, demo)
    workers = web_workers(workers)
    if shutil.which("redis-server") is None:
        raise ServerError("redis-server is not installed; on Debian/Ubuntu: "
                          "apt-get install -y redis-server (or `make system`)")
    current = status(home)
    if current["healthy"]:
        return {**current, "already_running": True}
    # PID files outlive only a run that did not stop through `stop`: a crash, a kill,
    # a power cut, or a start that failed half-way
    crashed = any(home.pid_file(n).exists() for n in PROCESSES)
    if crashed:
        stop(home)  # whatever is left of it (web workers may outlive a killed master)
    if _port_in_use(port):
        raise ServerError(f"port {port} on 127.0.0.1 is taken by another program; "
                          "pass --port with a free one")
    for d in (home.root, home.run, home.logs, home.tmp, home.root / "redis"):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root, 0o700)
    clean_tmp(home)
    creds = owner_credentials(home, demo=demo, create=True)
    redis_port = free_port()
    env = _process_env(home, creds, redis_port)
    # every interface includes loopback; a single other address is reached at itself
    url = f"http://{LOOPBACK if host in ('0.0.0.0', 'localhost') or is_loopback(host) else host}:{port}"
    home.state_file.write_text(json.dumps({"url": url, "port": port, "redis_port": redis_port,
                                           "credentials": creds.source, "demo": demo,
                                           "web_workers": workers}))
    began = time.monotonic()
    _spawn(home, "redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                           "--dir", str(home.root / "redis"), "--save", "60 1",
                           "--appendonly", "no", "--protected-mode", "yes"], env, detach)
    recovered = None
    if crashed and (home.root / "argilla.db").exists():
        # Argilla commits a response to its database, then updates the search index; a
        # kill between the two leaves the index behind (the record still shows as pending
        # to the annotator who answered it). Rebuild the index from the database first.
        recovered = "; ".join(reindex(home).splitlines())
    py = sys.executable
    _spawn(home, "worker", [py, "-m", "annotation.process", "worker"], env, detach)
    _spawn(home, "web", [py, "-m", "annotation.process", "web", "--port", str(port),
                         "--host", host, "--workers", str(workers)], env, detach)
    while not _healthy(url):
        dead = [n for n in PROCESSES if _read_pid(home, n) is None]
        if dead or time.monotonic() - began > timeout:
            logs = {n: _tail(home.logs / f"{n}.log") for n in PROCESSES}
            stop(home)
            why = f"{', '.join(dead)} exited" if dead else f"not healthy after {timeout:.0f} s"
            detail = "\n".join(f"--- {n}.log ---\n{t}" for n, t in logs.items() if t)
            raise ServerError(f"Argilla did not start ({why}); logs in {home.logs}\n{detail}")
        time.sleep(0.25)
    return {**status(home), "already_running": False, "recovered": recovered,
            "startup_s": round(time.monotonic() - began, 2), "credentials": creds.source}


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""


def stop(home: ServerHome, grace: float = 15.0) -> list[str]:
    """SIGTERM each process (web first, Redis last so it saves), wait, then SIGKILL."""
    stopped = []
    for name in PROCESSES:
        pid = _read_pid(home, name)
        if pid is not None:
            _kill_after(pid, grace)
            stopped.append(name)
        if name == "web":
            # the master stops its worker processes; a master killed with SIGKILL leaves
            # them running, holding the port, so they are found by process group
            recorded = _recorded_pid(home, name)
            for child in _group_members(recorded) if recorded else []:
                _kill_after(child, grace)
        home.pid_file(name).unlink(missing_ok=True)
    clean_tmp(home)
    return stopped


def _recorded_pid(home: ServerHome, name: str) -> int | None:
    """The PID a process file names, alive or not."""
    try:
        return int(home.pid_file(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (the web server's session: it is
    started as a group leader), children first."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return sorted(found, reverse=True)


def _kill_after(pid: int, grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            _reap(pid)
            time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def clean_tmp(home: ServerHome) -> None:
    """Remove the UI copies and other leftovers of processes that no longer run."""
    if home.tmp.exists():
        for entry in home.tmp.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def reindex(home: ServerHome, dataset_id: str | None = None) -> str:
    """Rebuild the embedded index from Argilla's database (server may be running)."""
    state = home.state() or {}
    creds = owner_credentials(home, demo=bool(state.get("demo")))
    env = _process_env(home, creds, state.get("redis_port") or 0)
    home.tmp.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "annotation.process", "reindex"]
    if dataset_id:
        cmd += ["--dataset-id", dataset_id]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=home.root)
    if out.returncode != 0:
        raise ServerError(f"reindex failed:\n{out.stderr[-3000:]}")
    if _read_pid(home, "web") is None:
        clean_tmp(home)
    return out.stdout


def wait_foreground(home: ServerHome) -> None:
    """Block until the web server exits or we are interrupted; then stop everything."""
    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while _read_pid(home, "web") is not None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(home)
