"""Against the real Argilla server (the session fixture): the embedded search engine
as Argilla uses it, push (idempotent, resumable), two annotators over REST, pull."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from annotation import pull as pl
from annotation.client import ArgillaError
from annotation.push import push, push_file
from annotation.users import UserSpec

pytestmark = pytest.mark.slow

ANNOTATORS = [UserSpec("alice", "annotator", "alice-secret-1"),
              UserSpec("bob", "annotator", "bob-secret-22")]


def ranked_rows(n: int, *, chat: bool = False) -> list[dict]:
    rows = []
    for i in range(n):
        prompt = f"Question {i}: what is {i} plus {i}?"
        rows.append({
            "id": f"q{i:03d}",
            "prompt": [{"role": "user", "content": prompt}] if chat else prompt,
            "responses": [f"It is {2 * i}.", f"Maybe {2 * i + 1}.", "I cannot say."],
            "models": ["m1", "m2", "m3"], "scores": [9.0, 4.0, 6.0], "judge": "smollm2",
            "judge_raw": ["9", "4", "6"], "source": "arith" if i % 2 else "trivia"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rank(order: list[int]) -> dict:
    """Response values ranking response_(k+1) at order[k]."""
    return {"ranking": {"value": [{"value": f"response_{i + 1}", "rank": r}
                                  for i, r in enumerate(order)]},
            "best_quality": {"value": 4}}


PENDING = {"filters": {"and": [{"type": "terms", "values": ["pending"],
                                "scope": {"entity": "response", "property": "status"}}]}}


def search_ids(client, dataset_id: str, query: dict) -> list[str]:
    out = client.search_records(dataset_id, query, limit=100)
    return [item["record"]["external_id"] for item in out["items"]]


def test_server_is_up_with_a_private_credentials_file(argilla_server):
    creds = argilla_server.home / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    with argilla_server.client() as c:
        assert c.me()["role"] == "owner"
        assert c.get("/api/v1/status")["search_engine"]["distribution"] == "align-sqlite"
    out = subprocess.run([sys.executable, "-m", "alignment.cli", "annotate", "status", "--home",
                          str(argilla_server.home)], capture_output=True, text=True)
    assert out.returncode == 0 and "healthy: True" in out.stdout
    secrets = json.loads(creds.read_text())
    assert secrets["password"] not in out.stdout and secrets["api_key"] not in out.stdout
    # a second serve finds it running and prints no secret either
    out = subprocess.run([sys.executable, "-m", "alignment.cli", "annotate", "serve", "--home",
                          str(argilla_server.home), "--port", argilla_server.url.rsplit(":", 1)[1]],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "already running" in out.stdout
    assert secrets["password"] not in out.stdout and secrets["api_key"] not in out.stdout
    assert str(creds) in out.stdout


def test_push_is_idempotent_and_resumes_after_an_interruption(argilla_server, tmp_path):
    rows = ranked_rows(7)
    with argilla_server.client() as c:
        def interrupt_after_two_batches(done: int, total: int) -> None:
            if done >= 4:
                raise KeyboardInterrupt  # the user pressed Ctrl-C mid-push
        with pytest.raises(KeyboardInterrupt):
            push(c, rows, "resume", batch_size=2, on_batch=interrupt_after_two_batches)
        ds = c.dataset("resume")
        # the two batches reported are stored; with two requests in flight the third may
        # be too, but nothing after it was sent
        stored = sorted(r["external_id"] for r in c.records(ds["id"]))
        assert stored in ([r["id"] for r in rows[:4]], [r["id"] for r in rows[:6]])
        again = push_file(c, write_jsonl(tmp_path / "r.jsonl", rows), "resume", batch_size=2)
        assert (again.created, again.pushed, again.skipped) == (False, 7 - len(stored),
                                                                len(stored))
        once_more = push(c, rows, "resume")
        assert (once_more.pushed, once_more.skipped) == (0, 7)
        # --update re-sends every row as an upsert: still one record per id
        edited = [{**r, "responses": [x.upper() for x in r["responses"]]} for r in rows]
        assert push(c, edited, "resume", update=True).pushed == 7
        stored = {r["external_id"]: r for r in c.records(ds["id"])}
        assert len(stored) == 7
        assert stored["q000"]["fields"]["response_1"] == "IT IS 0."
        # rows of another shape do not go into the same dataset
        with pytest.raises(Exception, match="fields"):
            push(c, ranked_rows(2, chat=True), "resume")


def test_search_engine_through_argilla(argilla_server):
    with argilla_server.client() as c:
        result = push(c, ranked_rows(6), "search")
        ds = result.dataset_id
        text = {"query": {"text": {"q": "plus 3", "field": "prompt"}}}
        # across all fields AND still holds, per term: q001 says "Maybe 3."
        assert sorted(search_ids(c, ds, {"query": {"text": {"q": "plus 3"}}})) == ["q001", "q003"]
        assert search_ids(c, ds, text) == ["q003"]
        assert sorted(search_ids(c, ds, {"query": {"text": {"q": "cannot",
                                                             "field": "response_3"}}})) \
            == [f"q{i:03d}" for i in range(6)]  # every record says it
        assert sorted(search_ids(c, ds, {"query": {"text": {"q": "cannot",
                                                             "field": "response_1"}}})) == []
        by_source = {"filters": {"and": [{"type": "terms", "values": ["arith"], "scope": {
            "entity": "metadata", "metadata_property": "source"}}]}}
        assert sorted(search_ids(c, ds, by_source)) == ["q001", "q003", "q005"]
        by_length = {"filters": {"and": [{"type": "range", "ge": 9, "scope": {
            "entity": "metadata", "metadata_property": "length_1"}}]}}
        assert sorted(search_ids(c, ds, by_length)) == ["q005"]  # only "It is 10." has 9 characters
        by_id_desc = {"sort": [{"scope": {"entity": "record", "property": "inserted_at"},
                                "order": "desc"}]}
        assert search_ids(c, ds, by_id_desc) == [f"q{i:03d}" for i in reversed(range(6))]
        # an answer changes what is pending, and the progress counts
        record = next(r for r in c.records(ds) if r["external_id"] == "q002")
        c.respond(record["id"], rank([1, 2, 3]))
        assert "q002" not in search_ids(c, ds, PENDING)
        submitted = {"filters": {"and": [{"type": "terms", "values": ["submitted"], "scope": {
            "entity": "response", "property": "status"}}]}}
        assert search_ids(c, ds, submitted) == ["q002"]
        # a discarded answer needs "values": {} (the client always sends it)
        record = next(r for r in c.records(ds) if r["external_id"] == "q004")
        c.respond(record["id"], {}, status="discarded")
        assert sorted(search_ids(c, ds, PENDING)) == ["q000", "q001", "q003", "q005"]
        # deleting records removes them from the index
        gone = next(r for r in c.records(ds) if r["external_id"] == "q000")
        c.request("DELETE", f"/api/v1/datasets/{ds}/records", params={"ids": gone["id"]})
        assert "q000" not in search_ids(c, ds, {})
        before = {name: search_ids(c, ds, q) for name, q in
                  (("text", text), ("source", by_source), ("pending", PENDING))}
    # rebuild the index from Argilla's database, even after the index file is lost
    out = subprocess.run([sys.executable, "-m", "alignment.cli", "annotate", "reindex",
                          "--home", str(argilla_server.home)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "reindexed search: 5 records" in out.stdout
    with argilla_server.client() as c:
        after = {name: search_ids(c, ds, q) for name, q in
                 (("text", text), ("source", by_source), ("pending", PENDING))}
    assert after == before


def test_two_annotators_then_pull(argilla_server, tmp_path):
    rows = ranked_rows(3)
    with argilla_server.client() as c:
        result = push(c, rows, "two", workspace="team", users=ANNOTATORS)
        assert set(result.users) == {"alice", "bob"}
        ds = result.dataset_id
        # annotators belong to `team` only and see only its datasets
        team = c.workspace("team")
        assert {u["username"] for u in c.workspace_users(team["id"])} >= {"alice", "bob"}
        push(c, ranked_rows(2), "elsewhere", workspace="other")
    alice = argilla_server.annotator("alice", "alice-secret-1")
    bob = argilla_server.annotator("bob", "bob-secret-22")
    assert {d["name"] for d in alice.get("/api/v1/me/datasets")["items"]} == {"two"}
    # alice: record q000 ranks 1,2,3; q001 ranks 1,2,3; bob: q000 ranks 1,3,2; q001 reversed
    plan = {"q000": ([1, 2, 3], [1, 3, 2]), "q001": ([1, 2, 3], [3, 2, 1])}
    for who, client in ((0, alice), (1, bob)):
        pending = search_ids(client, ds, PENDING)
        assert sorted(pending) == ["q000", "q001", "q002"]
        records = {r["record"]["external_id"]: r["record"]["id"]
                   for r in client.search_records(ds, PENDING, limit=10)["items"]}
        for ext, orders in plan.items():
            client.respond(records[ext], rank(orders[who]))
        assert sorted(search_ids(client, ds, PENDING)) == ["q002"]
    with pytest.raises(ArgillaError):  # an annotator cannot answer twice: use PUT
        alice.respond(records["q000"], rank([1, 2, 3]))
    alice.close()
    bob.close()

    with argilla_server.client() as c:
        progress = c.get(f"/api/v1/datasets/{ds}/progress")
        assert (progress["completed"], progress["pending"]) == (2, 1)  # min_submitted=2
        dataset, records, _ = pl.fetch(c, "two")
    pl.aggregate(records)
    by_id = {r.id: r for r in records}
    r0, r1 = by_id["q000"], by_id["q001"]
    assert r0.rankings == {"alice": {"response_1": 1, "response_2": 2, "response_3": 3},
                           "bob": {"response_1": 1, "response_2": 3, "response_3": 2}}
    assert r0.borda == {"response_1": 4, "response_2": 1, "response_3": 1}
    assert r0.order == ["response_1", "response_2", "response_3"]
    assert (r0.majority, r0.majority_absolute) == ("response_1", True)
    assert r0.kendall_w == pytest.approx(0.75)
    assert r1.kendall_w == pytest.approx(0.0) and r1.majority is None
    # judge scores 9, 4, 6 -> ranks 1, 3, 2; tau_b(points 4,1,1 ; -ranks) = 2/sqrt(6)
    assert r0.judge_ranks == {"response_1": 1, "response_2": 3, "response_3": 2}
    assert r0.tau_judge == pytest.approx(2 / 6 ** 0.5)
    stats = pl.summary(records)
    assert stats["krippendorff_alpha_ordinal"] == pytest.approx(-7 / 48)
    assert stats["kendall_w_mean"] == pytest.approx(0.375)
    assert (stats["annotated_records"], stats["submitted_responses"]) == (2, 4)

    out = tmp_path / "pairs.jsonl"
    cli = subprocess.run([sys.executable, "-m", "alignment.cli", "annotate", "pull",
                          "--dataset-name", "two", "--output", str(out), "--report",
                          str(tmp_path / "report"), "--home", str(argilla_server.home)],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    # q001's Borda points all tie: no pair; q000: best response_1 vs worst, where
    # response_2 and response_3 tie and the first of them is taken (alignment.data.pairs)
    assert pairs == [{"prompt": rows[0]["prompt"], "chosen": rows[0]["responses"][0],
                      "rejected": rows[0]["responses"][1], "id": "q000",
                      "score_chosen": 2.0, "score_rejected": 0.5}]
    from alignment.data import load_preferences

    ds_pairs = load_preferences(out)
    assert ds_pairs[0]["chosen"] == "It is 0."
    report = (tmp_path / "report" / "README.md").read_text()
    assert "-0.146" in report and "0.375" in report
    assert (tmp_path / "report" / "agreement.png").stat().st_size > 1000

    # the report's records feed `align annotate calibrate`, with a second judge from a
    # ranked file whose scores are the first judge's negated
    reversed_judge = write_jsonl(tmp_path / "reversed.jsonl",
                                 [{**r, "scores": [-s for s in r["scores"]], "judge": "rev"}
                                  for r in rows])
    cli = subprocess.run([sys.executable, "-m", "alignment.cli", "annotate", "calibrate",
                          "--input", str(tmp_path / "report" / "records.jsonl"),
                          "--judges", str(reversed_judge)], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "best agreement with the annotators: smollm2" in cli.stdout
    cal = json.loads((tmp_path / "report" / "calibration.json").read_text())
    smollm2, rev = cal["judges"]
    # q000: points 4, 1, 1 against scores 9, 4, 6; q001's points all tie (tau undefined)
    assert (smollm2["judge"], rev["judge"]) == ("smollm2", "rev")
    assert smollm2["kendall_tau"]["mean"] == pytest.approx(2 / 6 ** 0.5)
    assert rev["kendall_tau"]["mean"] == pytest.approx(-2 / 6 ** 0.5)
    assert smollm2["records_tau_undefined"] == 1
    assert smollm2["top1_agreement"] == {"n": 1, "mean": 1.0, "ci95": None}
    assert (tmp_path / "report" / "calibration.png").stat().st_size > 1000


def test_conversational_prompts_give_conversational_pairs(argilla_server, tmp_path):
    rows = ranked_rows(2, chat=True)
    with argilla_server.client() as c:
        ds = push(c, rows, "chat").dataset_id
        assert c.fields(ds)[0]["settings"]["type"] == "chat"
        for r in c.records(ds):
            c.respond(r["id"], rank([2, 1, 3]))
        _, records, _ = pl.fetch(c, "chat")
    pl.aggregate(records)
    pairs = pl.to_pairs(records)
    assert pairs[0]["prompt"] == rows[0]["prompt"]
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": rows[0]["responses"][1]}]
    assert pairs[0]["rejected"] == [{"role": "assistant", "content": rows[0]["responses"][2]}]
    path = pl.write_pairs(pairs, tmp_path / "chat_pairs.jsonl")
    from alignment.data import load_preferences

    assert len(load_preferences(path)) == 2


def test_credentials_from_the_environment_are_required_together(tmp_path, monkeypatch):
    from alignment.errors import ConfigError
    from annotation.server import ServerHome, owner_credentials

    monkeypatch.setenv("ALIGN_ARGILLA_USERNAME", "someone")
    monkeypatch.delenv("ALIGN_ARGILLA_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="set all of"):
        owner_credentials(ServerHome(tmp_path))
    monkeypatch.delenv("ALIGN_ARGILLA_USERNAME")
    creds = owner_credentials(ServerHome(tmp_path), create=True)
    assert "password" not in repr(creds) and creds.password not in repr(creds)
    os.chmod(tmp_path / "credentials.json", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        owner_credentials(ServerHome(tmp_path))
