"""Simulated annotators against the local Argilla server, with a crash in the middle.

    python bench/annotators.py [--annotators 4] [--records 200] [--kill-after 150]

Starts a throwaway server (loopback, temporary home), pushes ranked records that every
annotator ranks, and lets several annotators work at once over REST the way the
UI does: ask for the next pending record, submit a ranking, repeat. After ``--kill-after``
acknowledged submissions every server process (web workers, background worker, Redis) is
killed with SIGKILL, and the server is started again in the same home; the annotators
retry through the outage with the tokens they already hold. At the end the owner reads
every record back, and each submission the server had acknowledged must be there.

Prints p50/p95 of the next-record and submit latencies, the outage, and responses lost
(acknowledged but missing). ``tests/annotation/test_faults.py`` runs the same simulation
at a smaller size and asserts that nothing was lost.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PENDING = {"filters": {"and": [{"type": "terms", "values": ["pending"],
                                "scope": {"entity": "response", "property": "status"}}]}}


def ranked_rows(n: int) -> list[dict]:
    return [{"id": f"load-{i:05d}", "prompt": f"Question {i}: how do I sort a list of {i} items?",
             "responses": [f"Use sorted() on the {i} items.", "Sort them by hand.",
                           f"Call list.sort(); {i} items sort in place."],
             "models": ["a", "b", "c"], "scores": [4.0, 2.0, 3.0], "judge": "load",
             "judge_raw": ["", "", ""], "source": "load"} for i in range(n)]


@dataclass
class Tally:
    """What the annotators saw, shared by their threads (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: dict[str, set[str]] = field(default_factory=dict)  # user -> record ids
    next_s: list[float] = field(default_factory=list)
    submit_s: list[float] = field(default_factory=list)
    failed_requests: int = 0
    conflicts: int = 0  # a retried submission the server already had
    stale: int = 0  # a record offered again after the server said it had our answer
    total: int = 0

    def ack(self, user: str, record_id: str, seconds: float) -> int:
        with self.lock:
            self.acknowledged.setdefault(user, set()).add(record_id)
            self.submit_s.append(seconds)
            self.total += 1
            return self.total


def annotator(url: str, username: str, password: str, dataset_id: str, tally: Tally,
              stop: threading.Event, deadline: float) -> None:
    """Fetch the next pending record and rank it, until none is left or ``stop``."""
    import httpx

    from annotation.client import ArgillaClient, ArgillaError

    user = ArgillaClient.for_user(url, username, password)
    answered: set[str] = set()
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                t = time.perf_counter()
                page = user.search_records(dataset_id, PENDING, limit=1)
                took = time.perf_counter() - t
            except (ArgillaError, httpx.HTTPError):
                with tally.lock:
                    tally.failed_requests += 1
                time.sleep(0.2)  # the server is down: try again, as the UI would
                continue
            with tally.lock:
                tally.next_s.append(took)
            if not page["items"]:
                return
            record = page["items"][0]["record"]
            if record["id"] in answered:  # the index lags the database: stop, and say so
                with tally.lock:
                    tally.stale += 1
                return
            ranks = [1, 2, 3] if hash((username, record["id"])) % 2 else [3, 1, 2]
            values = {"ranking": {"value": [{"value": f"response_{k + 1}", "rank": r}
                                            for k, r in enumerate(ranks)]},
                      "best_quality": {"value": 3}}
            try:
                t = time.perf_counter()
                user.respond(record["id"], values)
                tally.ack(username, record["id"], time.perf_counter() - t)
                answered.add(record["id"])
            except ArgillaError as e:
                if "HTTP 409" in str(e) or "HTTP 422" in str(e):
                    answered.add(record["id"])
                    with tally.lock:  # stored by a request whose answer the crash cut off
                        tally.conflicts += 1
                    continue
                with tally.lock:
                    tally.failed_requests += 1
                time.sleep(0.2)
            except httpx.HTTPError:
                with tally.lock:
                    tally.failed_requests += 1
                time.sleep(0.2)
    finally:
        user.close()


def crash(home) -> None:
    """SIGKILL every process of the local server at once, as a power cut would."""
    from annotation import server as srv

    web = srv._recorded_pid(home, "web")
    if web:
        try:
            os.killpg(web, signal.SIGKILL)  # the web server and its worker processes
        except ProcessLookupError:
            pass
    for name in ("worker", "redis"):
        pid = srv._recorded_pid(home, name)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for name in srv.PROCESSES:
        pid = srv._recorded_pid(home, name)
        while pid and srv._alive(pid):
            srv._reap(pid)
            time.sleep(0.05)


@dataclass
class Report:
    annotators: int
    records: int
    acknowledged: int
    lost: int
    duplicated: int
    conflicts: int
    failed_requests: int
    outage_s: float | None
    next_s: list[float]
    submit_s: list[float]
    index_consistent: bool
    stale: int = 0

    def lines(self) -> list[str]:
        def p(xs: list[float], q: float) -> float:
            return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] * 1000 \
                if len(xs) > 1 else (xs[0] * 1000 if xs else float("nan"))

        outage = f"{self.outage_s:.1f} s" if self.outage_s is not None else "none"
        return [
            f"{self.annotators} annotators, {self.records} records, each ranked by every annotator",
            f"next record: p50 {p(self.next_s, 50):.0f} ms, p95 {p(self.next_s, 95):.0f} ms "
            f"({len(self.next_s)} requests)",
            f"submit: p50 {p(self.submit_s, 50):.0f} ms, p95 {p(self.submit_s, 95):.0f} ms "
            f"({len(self.submit_s)} requests)",
            f"server killed (SIGKILL) and restarted: outage {outage}; requests that failed "
            f"meanwhile and were retried: {self.failed_requests}",
            f"responses acknowledged {self.acknowledged}, lost {self.lost}, duplicated "
            f"{self.duplicated}; retried submissions already stored: {self.conflicts}; "
            f"every record ranked by all and none left pending in the search index: "
            f"{self.index_consistent} (records offered again after they were answered: "
            f"{self.stale})",
        ]


def simulate(home_dir: Path, *, annotators: int = 4, records: int = 200,
             kill_after: int | None = 150, time_limit: float = 600.0,
             restart: bool = True) -> Report:
    """Run the simulation in a fresh server home; see the module docstring."""
    from annotation import server as srv
    from annotation.client import ArgillaClient, resolve_connection
    from annotation.push import push
    from annotation.users import UserSpec

    home = srv.ServerHome(home_dir)
    port = srv.free_port()
    srv.start(home, port=port)
    try:
        users = [UserSpec(f"annotator-{i}", "annotator", f"annotator-{i}-pw-{os.getpid()}")
                 for i in range(annotators)]
        with ArgillaClient(resolve_connection(home=home.root)) as owner:
            result = push(owner, ranked_rows(records), "load", users=users,
                          min_submitted=annotators)
        url = (home.state() or {})["url"]
        tally, stop = Tally(), threading.Event()
        deadline = time.monotonic() + time_limit
        threads = [threading.Thread(target=annotator, daemon=True,
                                    args=(url, u.username, u.password, result.dataset_id,
                                          tally, stop, deadline)) for u in users]
        for t in threads:
            t.start()
        outage = None
        if kill_after is not None:
            while tally.total < kill_after and any(t.is_alive() for t in threads):
                time.sleep(0.02)
            down = time.monotonic()
            crash(home)
            if restart:
                srv.start(home, port=port)
                outage = time.monotonic() - down
            else:
                stop.set()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + 5)
        stop.set()
        with ArgillaClient(resolve_connection(home=home.root)) as owner:
            names = {u["id"]: u["username"] for u in owner.users()}
            stored: dict[str, list[str]] = {}  # user -> record ids with a submitted response
            for r in owner.records(result.dataset_id, include=("responses",)):
                for resp in r.get("responses") or []:
                    if resp["status"] == "submitted":
                        stored.setdefault(names[resp["user_id"]], []).append(r["id"])
        lost = sum(len(ids - set(stored.get(u, []))) for u, ids in tally.acknowledged.items())
        duplicated = sum(len(ids) - len(set(ids)) for ids in stored.values())
        per_record: dict[str, int] = {}
        for ids in stored.values():
            for i in ids:
                per_record[i] = per_record.get(i, 0) + 1
        finished = len(per_record) == records and min(per_record.values()) == annotators
        consistent = finished and not tally.stale and _nothing_pending(url, users,
                                                                       result.dataset_id)
        return Report(annotators, records, sum(map(len, tally.acknowledged.values())), lost,
                      duplicated, tally.conflicts, tally.failed_requests, outage,
                      tally.next_s, tally.submit_s, consistent, tally.stale)
    finally:
        srv.stop(home)


def _nothing_pending(url: str, users, dataset_id: str) -> bool:
    """Once every record has every annotator's ranking, the search index offers no annotator a
    pending record (it would, had the crash cost it an update the database has)."""
    from annotation.client import ArgillaClient

    for u in users:
        with ArgillaClient.for_user(url, u.username, u.password) as c:
            if c.search_records(dataset_id, PENDING, limit=1)["total"]:
                return False
    return True


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--annotators", type=int, default=4)
    p.add_argument("--records", type=int, default=200)
    p.add_argument("--kill-after", type=int, default=150,
                   help="acknowledged submissions before the crash (negative: no crash)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="align-annotators-") as tmp:
        report = simulate(Path(tmp), annotators=args.annotators, records=args.records,
                          kill_after=None if args.kill_after < 0 else args.kill_after)
    print("\n".join(report.lines()))
    return 1 if report.lost or report.duplicated else 0


if __name__ == "__main__":
    sys.exit(main())
