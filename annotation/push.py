"""Push a ranked dataset to Argilla for human ranking.

Reads align's ranked rows, creates (once) a dataset with the prompt, the responses,
a ranking question, a 1–5 rating of the best response and a comment box, the AI
judge's ranking as suggestions, and metadata to filter on. Records are keyed by the
row ``id``: pushing again skips rows already there (or updates them with
``update=True``), so an interrupted push is finished by running it again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from alignment.errors import ConfigError
from annotation import records as rec
from annotation.client import ArgillaClient, ArgillaError
from annotation.users import UserSpec, ensure_users

DEFAULT_WORKSPACE = "align"
BATCH = 200  # records per bulk request (the server takes up to 500)
# bulk requests in flight at once: the local server runs two web processes on two cores
# (see annotation.server.web_workers), and a single stream of requests keeps one idle
CONCURRENCY = 2


@dataclass
class PushResult:
    dataset_id: str
    dataset_url: str
    created: bool
    pushed: int = 0
    skipped: int = 0
    users: dict[str, str] = field(default_factory=dict)


def read_ranked(path: str | os.PathLike) -> list[dict]:
    from alignment.data import load_ranked

    return load_ranked(path)


def _create_dataset(client: ArgillaClient, name: str, workspace: dict, rows: list[dict], n: int,
                    chat: bool, scale, min_submitted: int, guidelines: str) -> dict:
    ds = client.post("/api/v1/datasets", {
        "name": name, "workspace_id": workspace["id"], "guidelines": guidelines,
        "allow_extra_metadata": False,
        "metadata": {"judge": ", ".join(sorted({str(r.get("judge") or "unknown")
                                                for r in rows})),
                     "created_by": "align annotate push"},
        "distribution": {"strategy": "overlap", "min_submitted": min_submitted}})
    settings = rec.dataset_settings(n, chat, scale)
    for f in settings["fields"]:
        client.post(f"/api/v1/datasets/{ds['id']}/fields", f)
    for q in settings["questions"]:
        client.post(f"/api/v1/datasets/{ds['id']}/questions", q)
    for m in settings["metadata"]:
        client.post(f"/api/v1/datasets/{ds['id']}/metadata-properties", m)
    return client.put(f"/api/v1/datasets/{ds['id']}/publish")


def _check_matches(client: ArgillaClient, ds: dict, n: int, chat: bool) -> None:
    """A re-push must fit the dataset already on the server."""
    fields = {f["name"]: f["settings"]["type"] for f in client.fields(ds["id"])}
    want = {rec.PROMPT: "chat" if chat else "text",
            **{rec.response_name(i): "text" for i in range(n)}}
    if fields != want:
        raise ConfigError(
            f"dataset {ds['name']!r} exists with fields {sorted(fields)} but these rows need "
            f"{sorted(want)} (prompt as {want[rec.PROMPT]}); push under another --dataset-name")
    if ds.get("status") != "ready":
        raise ConfigError(f"dataset {ds['name']!r} exists but was never published (an earlier "
                          "push stopped while creating it); delete it in the Argilla UI and push "
                          "again")


def push(client: ArgillaClient, rows: list[dict], dataset_name: str, *,
         workspace: str = DEFAULT_WORKSPACE, users: list[UserSpec] = (),
         min_submitted: int = 2, update: bool = False, batch_size: int = BATCH,
         guidelines: str = rec.GUIDELINES, source: object = "rows",
         on_batch: Callable[[int, int], None] | None = None,
         concurrency: int = CONCURRENCY) -> PushResult:
    """Create or extend the dataset; ``on_batch(done, total)`` after each request.
    ``concurrency`` bulk requests are in flight at once."""
    n = rec.check_rows(rows, source)
    chat = rec.is_chat(rows[0]["prompt"])
    scale = rec.score_range(rows)
    if min_submitted < 1:
        raise ConfigError("--min-submitted must be at least 1")
    ws = client.workspace(workspace, create=True)
    user_status = ensure_users(client, ws, list(users))
    ds = client.dataset(dataset_name, ws["id"])
    created = ds is None
    if created:
        ds = _create_dataset(client, dataset_name, ws, rows, n, chat, scale, min_submitted,
                             guidelines)
    else:
        _check_matches(client, ds, n, chat)
    questions = {q["name"]: q["id"] for q in client.questions(ds["id"])}
    missing = {rec.RANKING, rec.RATING} - set(questions)
    if missing:
        raise ConfigError(f"dataset {dataset_name!r} lacks questions {sorted(missing)}; it was "
                          "not made by `align annotate push`")
    present = set() if update or created else {
        r["external_id"] for r in client.records(ds["id"])}
    todo = [r for r in rows if str(r["id"]) not in present]
    result = PushResult(ds["id"], f"{client.connection.url}/dataset/{ds['id']}/annotation-mode",
                        created, skipped=len(rows) - len(todo), users=user_status)
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]

    def send(batch: list[dict]) -> None:
        client.upsert_records(ds["id"], [rec.to_record(r, questions, scale) for r in batch])

    # a window of `concurrency` batches in flight; results are taken in order, and the
    # next batch goes out only once the oldest is counted, so an error or an interrupt
    # leaves at most `concurrency - 1` batches beyond the last one reported
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        window = [pool.submit(send, b) for b in batches[:max(1, concurrency)]]
        for i, batch in enumerate(batches):
            try:
                window[i].result()
            except ArgillaError as e:
                ids = f"{batch[0]['id']} .. {batch[-1]['id']}"
                raise ArgillaError(f"{source}: records {ids} were refused ({e}); the "
                                   f"{result.pushed} before them are stored, and pushing "
                                   "again resumes after them") from None
            result.pushed += len(batch)
            if on_batch:
                on_batch(result.pushed, len(todo))
            if len(window) < len(batches):
                window.append(pool.submit(send, batches[len(window)]))
    return result


def push_file(client: ArgillaClient, path: str | os.PathLike, dataset_name: str,
              **kw) -> PushResult:
    return push(client, read_ranked(path), dataset_name, source=Path(path), **kw)
