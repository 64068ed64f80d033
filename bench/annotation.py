"""Benchmark the local Argilla setup at 10,000 records: push, pull, and how long an
annotator waits for the next pending record (REST, as the UI asks for it).

    python bench/annotation.py [--records 10000] [--url URL]

Without --url it starts a throwaway local server (embedded SQLite search engine) in
a temporary home and stops it at the end. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotation import pull as pl  # noqa: E402
from annotation import server as srv  # noqa: E402
from annotation.client import ArgillaClient, resolve_connection  # noqa: E402
from annotation.push import push  # noqa: E402
from annotation.users import UserSpec  # noqa: E402

PENDING = {"filters": {"and": [{"type": "terms", "values": ["pending"],
                                "scope": {"entity": "response", "property": "status"}}]}}


def rows(n: int) -> list[dict]:
    return [{"id": f"bench-{i:06d}", "prompt": f"Prompt number {i}: explain topic {i % 97}.",
             "responses": [f"Answer A to {i}. " * 5, f"Answer B to {i}. " * 3, f"Answer C {i}."],
             "models": ["a", "b", "c"], "scores": [float(i % 10), 5.0, 2.5], "judge": "bench",
             "judge_raw": ["", "", ""], "source": f"s{i % 5}"} for i in range(n)]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run(client: ArgillaClient, n: int, name: str) -> None:
    data = rows(n)
    annotator = UserSpec("bench-annotator", "annotator", "bench-annotator-pw")
    result, t_push = timed(lambda: push(client, data, name, workspace="bench",
                                        users=[annotator], min_submitted=1))
    print(f"push {n} records: {t_push:.1f} s ({n / t_push:.0f} records/s)")
    _, t_repush = timed(lambda: push(client, data, name, workspace="bench"))
    print(f"re-push (all {n} already there, skipped): {t_repush:.1f} s")

    user = ArgillaClient.for_user(client.connection.url, annotator.username, annotator.password)
    ds = result.dataset_id
    waits, answer_waits = [], []
    for i in range(20):
        page, dt = timed(lambda: user.search_records(ds, PENDING, limit=1,
                                                     include=("responses", "suggestions")))
        waits.append(dt)
        record = page["items"][0]["record"]
        if i % 2 == 0:  # answer every other one: the next fetch sees a changed index
            _, dt = timed(lambda: user.respond(record["id"], {
                "ranking": {"value": [{"value": f"response_{k + 1}", "rank": k + 1}
                                      for k in range(3)]},
                "best_quality": {"value": 3}}))
            answer_waits.append(dt)
    user.close()
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"
    print(f"annotator fetches next pending record ({n} records): {ms(waits)}")
    print(f"annotator submits a ranking: {ms(answer_waits)}")

    (ds_info, records, _), t_pull = timed(lambda: pl.fetch(client, name))
    _, t_agg = timed(lambda: pl.aggregate(records))
    print(f"pull {len(records)} records with responses: {t_pull:.1f} s; "
          f"aggregate: {t_agg * 1000:.0f} ms; annotated: "
          f"{sum(bool(r.rankings) for r in records)}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--url", help="an existing Argilla (key from ARGILLA_API_KEY)")
    args = p.parse_args()
    name = f"bench-{int(time.time())}"
    if args.url:
        with ArgillaClient(resolve_connection(args.url)) as client:
            run(client, args.records, name)
        return 0
    with tempfile.TemporaryDirectory(prefix="align-argilla-bench-") as tmp:
        home = srv.ServerHome(Path(tmp))
        info = srv.start(home, port=srv.free_port())
        print(f"local server started in {info['startup_s']} s")
        try:
            with ArgillaClient(resolve_connection(home=home.root)) as client:
                run(client, args.records, name)
        finally:
            srv.stop(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
