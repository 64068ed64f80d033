"""Fixtures for annotation tests: the real Argilla server, started once per session.

``argilla_server`` starts Redis, the rq worker and argilla-server (with the embedded
SQLite search engine) in a fresh home folder on a free loopback port, waits until it
answers, and stops everything at the end. Its start-up time is printed in the test
summary. Tests that use it are marked ``slow``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

_STARTUP: dict[str, float] = {}


@dataclass
class LocalArgilla:
    home: Path
    url: str
    startup_s: float

    def client(self):
        from annotation.client import ArgillaClient, resolve_connection

        return ArgillaClient(resolve_connection(home=self.home))

    def annotator(self, username: str, password: str):
        from annotation.client import ArgillaClient

        return ArgillaClient.for_user(self.url, username, password)


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory) -> LocalArgilla:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make system)")
    from annotation import server as srv

    home = srv.ServerHome(tmp_path_factory.mktemp("argilla-home"))
    began = time.monotonic()
    info = srv.start(home, port=srv.free_port(), detach=True)
    _STARTUP["argilla server start (s)"] = round(time.monotonic() - began, 2)
    try:
        yield LocalArgilla(home.root, info["url"], info["startup_s"])
    finally:
        srv.stop(home)


def pytest_terminal_summary(terminalreporter) -> None:
    for name, value in _STARTUP.items():
        terminalreporter.write_line(f"{name}: {value}")
