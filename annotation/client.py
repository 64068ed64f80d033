"""A small REST client for Argilla's v1 API: what push and pull need, nothing more.

The REST API rather than the ``argilla`` SDK because the SDK 2.8.0 drops the order
of ranking answers when it reads them back, and pull must see each annotator's
ranks exactly.

Where the server is:
- ``--url`` or ``ARGILLA_API_URL`` (a real deployment), with ``ARGILLA_API_KEY``;
- otherwise the local server of ``align annotate serve`` (its state and credentials
  files in the home folder). An API key is never taken on the command line, where
  other users could read it in the process list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx

from alignment.errors import AlignError, ConfigError

PAGE = 1000  # the server's largest page of records


class ArgillaError(AlignError):
    """The server refused a request; the message carries its answer."""


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str
    source: str  # where url and key came from (never the key itself)

    def __repr__(self) -> str:
        return f"Connection(url={self.url!r}, source={self.source!r})"


def resolve_connection(url: str | None = None, home: str | os.PathLike | None = None) -> Connection:
    from annotation.server import ServerHome, default_home, owner_credentials

    url = url or os.environ.get("ARGILLA_API_URL")
    key = os.environ.get("ARGILLA_API_KEY")
    if url:
        if not key:
            raise ConfigError(f"--url/ARGILLA_API_URL is {url}: set ARGILLA_API_KEY to an API "
                              "key of that server (Argilla UI: My settings → API key)")
        return Connection(url.rstrip("/"), key, "ARGILLA_API_URL/--url + ARGILLA_API_KEY")
    server = ServerHome(default_home() if home is None else Path(home))
    state = server.state()
    if not state:
        raise ConfigError(f"no Argilla server: none was started in {server.root} "
                          "(run `align annotate serve`), and ARGILLA_API_URL is not set")
    creds = owner_credentials(server, demo=bool(state.get("demo")))
    return Connection(state["url"], key or creds.api_key, f"local server in {server.root}")


class ArgillaClient:
    def __init__(self, connection: Connection, timeout: float = 120.0):
        self.connection = connection
        self.http = httpx.Client(base_url=connection.url, timeout=timeout,
                                 headers={"X-Argilla-Api-Key": connection.api_key})

    @classmethod
    def for_user(cls, url: str, username: str, password: str) -> "ArgillaClient":
        """A client acting as an annotator, signed in with username and password."""
        r = httpx.post(f"{url}/api/v1/token", data={"username": username, "password": password},
                       timeout=30)
        if r.status_code != 201:
            raise ArgillaError(f"sign-in as {username} failed: HTTP {r.status_code}")
        client = cls(Connection(url, "", f"token of {username}"))
        client.http.headers.pop("X-Argilla-Api-Key")
        client.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return client

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "ArgillaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, **kw) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise ArgillaError(f"cannot reach Argilla at {self.connection.url} "
                               f"({self.connection.source}); is it running? "
                               "(`align annotate status`)") from None
        if r.status_code == 401:
            raise ArgillaError(f"{self.connection.url} rejected the API key "
                               f"({self.connection.source})")
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ArgillaError(f"{method} {path}: HTTP {r.status_code}: {detail}")
        return r.json() if r.content else None

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("POST", path, json=body, **kw)

    def put(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("PUT", path, json=body, **kw)

    # -- users and workspaces -------------------------------------------------------
    def me(self) -> dict:
        return self.get("/api/v1/me")

    def users(self) -> list[dict]:
        return self.get("/api/v1/users")["items"]

    def workspace(self, name: str, create: bool = False) -> dict | None:
        for ws in self.get("/api/v1/me/workspaces")["items"]:
            if ws["name"] == name:
                return ws
        return self.post("/api/v1/workspaces", {"name": name}) if create else None

    def workspace_users(self, workspace_id: str) -> list[dict]:
        return self.get(f"/api/v1/workspaces/{workspace_id}/users")["items"]

    def add_to_workspace(self, workspace_id: str, user_id: str) -> None:
        if not any(u["id"] == user_id for u in self.workspace_users(workspace_id)):
            self.post(f"/api/v1/workspaces/{workspace_id}/users", {"user_id": user_id})

    def create_user(self, username: str, password: str, role: str,
                    first_name: str | None = None) -> dict:
        return self.post("/api/v1/users", {"username": username, "password": password,
                                           "role": role, "first_name": first_name or username})

    # -- datasets ---------------------------------------------------------------------
    def dataset(self, name: str, workspace_id: str | None = None) -> dict | None:
        found = [d for d in self.get("/api/v1/me/datasets")["items"] if d["name"] == name
                 and (workspace_id is None or d["workspace_id"] == workspace_id)]
        if len(found) > 1:
            raise ArgillaError(f"several datasets are named {name!r}; pass --workspace")
        return found[0] if found else None

    def fields(self, dataset_id: str) -> list[dict]:
        return self.get(f"/api/v1/datasets/{dataset_id}/fields")["items"]

    def questions(self, dataset_id: str) -> list[dict]:
        return self.get(f"/api/v1/datasets/{dataset_id}/questions")["items"]

    def metadata_properties(self, dataset_id: str) -> list[dict]:
        return self.get(f"/api/v1/me/datasets/{dataset_id}/metadata-properties")["items"]

    def records(self, dataset_id: str, include: tuple[str, ...] = ()) -> Iterator[dict]:
        """Every record of a dataset, in insertion order, a page at a time."""
        offset = 0
        while True:
            params: dict[str, Any] = {"offset": offset, "limit": PAGE}
            if include:
                params["include"] = ",".join(include)
            page = self.get(f"/api/v1/datasets/{dataset_id}/records", params=params)["items"]
            yield from page
            if len(page) < PAGE:
                return
            offset += len(page)

    def upsert_records(self, dataset_id: str, items: list[dict]) -> list[dict]:
        return self.put(f"/api/v1/datasets/{dataset_id}/records/bulk", {"items": items})["items"]

    def search_records(self, dataset_id: str, query: dict, *, limit: int = 50,
                       offset: int = 0, include: tuple[str, ...] = ()) -> dict:
        """The annotator's view: ``/me/datasets/.../records/search``."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if include:
            params["include"] = ",".join(include)
        return self.post(f"/api/v1/me/datasets/{dataset_id}/records/search", query,
                         params=params)

    def respond(self, record_id: str, values: dict, status: str = "submitted") -> dict:
        # a discarded response without "values" is an HTTP 500 in Argilla 2.8: always send it
        return self.post(f"/api/v1/records/{record_id}/responses",
                         {"values": values or {}, "status": status})
