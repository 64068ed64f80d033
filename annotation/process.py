"""Entry point of the processes ``annotation.server`` starts: the web server, the
background worker, and the one-shot index rebuild.

    python -m annotation.process web --port 6900 [--host 127.0.0.1]
    python -m annotation.process worker
    python -m annotation.process reindex [--dataset-id UUID]

The parent prepares the environment (``ARGILLA_HOME_PATH``, ``ARGILLA_SEARCH_ENGINE``,
``ARGILLA_REDIS_URL``, ``TMPDIR``, the owner's credentials); Argilla reads its
settings on first import, which is why nothing here imports ``argilla_server`` at
module level.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def _migrate() -> None:
    import alembic.config
    from argilla_server.database import ALEMBIC_CONFIG_FILE

    alembic.config.main(argv=["-c", ALEMBIC_CONFIG_FILE, "--raiseerr", "upgrade", "head"])


async def _ensure_owner() -> None:
    """The owner named by the credentials exists with exactly those credentials:
    a changed password or key in the credentials file takes effect on restart."""
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole

    username = os.environ["ALIGN_ARGILLA_USERNAME"]
    password = os.environ["ALIGN_ARGILLA_PASSWORD"]
    api_key = os.environ["ALIGN_ARGILLA_API_KEY"]
    async with AsyncSessionLocal() as db:
        user = await accounts.get_user_by_username(db, username)
        if user is None:
            await User.create(db, first_name=username, username=username, role=UserRole.owner,
                              api_key=api_key, password_hash=accounts.hash_password(password))
            return
        changes = {}
        if user.api_key != api_key:
            changes["api_key"] = api_key
        if not accounts.verify_password(password, user.password_hash):
            changes["password_hash"] = accounts.hash_password(password)
        if user.role != UserRole.owner:
            changes["role"] = UserRole.owner
        if changes:
            await user.update(db, **changes)


def create_app():
    """Argilla's web app with the embedded search engine registered: the factory each
    web worker process calls."""
    import annotation.search_engine  # noqa: F401  (registers the embedded engine)
    from argilla_server import app

    return app


def web(port: int, host: str = "127.0.0.1", workers: int = 1) -> None:
    import uvicorn

    import annotation.search_engine  # noqa: F401  (registers the embedded engine)

    _migrate()
    asyncio.run(_ensure_owner())
    uvicorn.run("annotation.process:create_app", factory=True, host=host, port=port,
                workers=workers, access_log=False, log_level="warning")


def worker() -> None:
    from rq import Worker

    import annotation.search_engine  # noqa: F401
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION

    Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work(
        with_scheduler=False, logging_level="WARNING")


def reindex(dataset_id: str | None) -> None:
    from uuid import UUID

    from annotation.search_engine import reindex as rebuild

    counts = asyncio.run(rebuild(UUID(dataset_id) if dataset_id else None))
    for name, n in counts.items():
        print(f"reindexed {name}: {n} records")
    if not counts:
        print("no datasets to reindex")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotation.process")
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("web")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--workers", type=int, default=1)
    sub.add_parser("worker")
    p = sub.add_parser("reindex")
    p.add_argument("--dataset-id")
    args = parser.parse_args(argv)
    if args.role == "web":
        web(args.port, args.host, args.workers)
    elif args.role == "worker":
        worker()
    else:
        reindex(args.dataset_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
