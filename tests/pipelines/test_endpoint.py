"""Judges on a real OpenAI-compatible endpoint over loopback: retries of rate-limited
requests, the key taken from the environment, and (slow) every kind of judge pipeline
against `pipelines.server` serving the bundled SmolLM2."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alignment.data import read_card, read_rows, write_rows
from pipelines.verdicts import parse_ranking, parse_rating, parse_verdict

ROWS = [{"id": "q1", "prompt": "What is the capital of France?",
         "responses": ["Paris.", "London is the capital of France.", "I am not sure."],
         "models": ["a", "b", "c"], "scores": [None] * 3, "judge": "none",
         "judge_raw": [""] * 3}]


@pytest.fixture
def ranked(tmp_path):
    return str(write_rows(ROWS, tmp_path / "in.jsonl"))


def _generate(*argv: str) -> int:
    from pipelines.cli import main

    return main(list(argv))


class FlakyEndpoint:
    """A loopback chat-completions endpoint that answers 429 to its first ``fail``
    requests, then "Rating: 4"; it records every request's Authorization header."""

    def __init__(self, fail: int):
        self.fail, self.calls, self.auth = fail, 0, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.calls += 1
                owner.auth.append(self.headers.get("Authorization"))
                if owner.calls <= owner.fail:
                    payload, status = {"error": {"message": "rate limited",
                                                 "type": "rate_limit"}}, 429
                else:
                    status, payload = 200, {
                        "id": f"c{owner.calls}", "object": "chat.completion", "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {
                            "role": "assistant", "content": "Rating: 4\nRationale: fine."}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                  "total_tokens": 2}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("retry-after-ms", "20")  # honoured by the openai client
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_rate_limited_requests_are_retried_and_the_key_is_never_written(
        ranked, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALIGN_TEST_JUDGE_KEY", "sk-test-secret-123")
    out = tmp_path / "uf.jsonl"
    with FlakyEndpoint(fail=2) as endpoint:
        assert _generate("ultrafeedback", ranked, "-o", str(out), "--base-url",
                         endpoint.base_url, "--model", "judge", "--aspects", "honesty",
                         "--api-key-env", "ALIGN_TEST_JUDGE_KEY", "--concurrency", "1",
                         "--max-retries", "3") == 0
    assert endpoint.calls == 2 + 3  # two 429s, then one answer per response
    assert set(endpoint.auth) == {"Bearer sk-test-secret-123"}
    rows = read_rows(out)
    assert rows[0]["scores"] == [4.0, 4.0, 4.0]
    card_text = out.with_name("uf.README.md").read_text()
    assert "sk-test-secret-123" not in card_text + capsys.readouterr().out
    judge = read_card(out)["judge"]
    assert judge["api_key_env"] == "ALIGN_TEST_JUDGE_KEY" and judge["max_retries"] == 3


def test_exhausted_retries_leave_no_verdict(ranked, tmp_path):
    out = tmp_path / "uf.jsonl"
    with FlakyEndpoint(fail=2) as endpoint:
        _generate("ultrafeedback", ranked, "-o", str(out), "--base-url", endpoint.base_url,
                  "--model", "judge", "--aspects", "honesty", "--concurrency", "1",
                  "--max-retries", "1")
    # the first request is tried twice and gives up; the next two get answers
    rows = read_rows(out)
    assert rows[0]["scores"] == [None, 4.0, 4.0]
    assert json.loads(rows[0]["judge_raw"][0]) == {"honesty": None}
    assert read_card(out)["counts"]["parse_failures_per_aspect"] == {"honesty": 1}


# ---------------------------------------------------------------- the real local server

@pytest.fixture(scope="module")
def smollm2_server(smollm2):
    from pipelines.server import LocalServer

    with LocalServer(str(smollm2), served_name="smollm2") as server:
        yield server


@pytest.mark.slow
def test_local_server_speaks_the_openai_api(smollm2_server):
    import openai

    client = openai.OpenAI(base_url=smollm2_server.base_url, api_key="not-needed")
    assert [m.id for m in client.models.list().data] == ["smollm2"]
    chat = [{"role": "user", "content": "Is Paris in France? Answer Yes or No."}]
    greedy = client.chat.completions.create(model="smollm2", messages=chat, max_tokens=4,
                                            temperature=0, n=2)
    assert len(greedy.choices) == 2
    assert greedy.choices[0].message.content == greedy.choices[1].message.content
    assert greedy.usage.completion_tokens > 0
    scored = client.chat.completions.create(model="smollm2", messages=chat, max_tokens=1,
                                            temperature=0, logprobs=True, top_logprobs=5)
    first = scored.choices[0].logprobs.content[0]
    assert len(first.top_logprobs) == 5
    assert first.logprob == pytest.approx(max(t.logprob for t in first.top_logprobs))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=chat, max_tokens=1)


def _endpoint_args(server, *extra: str) -> list[str]:
    return ["--base-url", server.base_url, "--model", "smollm2", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("name,aspect", [("ultrafeedback", "helpfulness"),
                                         ("helpsteer", "correctness")])
def test_rating_pipelines_through_the_endpoint(name, aspect, smollm2_server, ranked,
                                               tmp_path):
    out = tmp_path / f"{name}.jsonl"
    assert _generate(name, ranked, "-o", str(out), "--aspects", aspect,
                     "--max-new-tokens", "24", *_endpoint_args(smollm2_server)) == 0
    scale = (1, 5) if name == "ultrafeedback" else (0, 4)
    row = read_rows(out)[0]
    for rating, raw in zip(row["ratings"], row["judge_raw"], strict=True):
        text = json.loads(raw)[aspect]
        assert isinstance(text, str) and text  # always kept, parsed or not
        parsed = parse_rating(text, scale)[0]
        assert rating[aspect] == (None if parsed is None else float(parsed))
    failures = sum(r[aspect] is None for r in row["ratings"])
    assert read_card(out)["counts"]["parse_failures_per_aspect"] == {aspect: failures}


@pytest.mark.slow
def test_ranking_through_the_endpoint(smollm2_server, ranked, tmp_path):
    out = tmp_path / "rk.jsonl"
    assert _generate("ranking", ranked, "-o", str(out), "--max-new-tokens", "16",
                     *_endpoint_args(smollm2_server)) == 0
    row = read_rows(out)[0]
    answer = json.loads(row["judge_raw"][0])["answer"]
    best_first = parse_ranking(answer, 3)
    if best_first is None:
        assert row["ranks"] == [None] * 3 and read_card(out)["counts"]["parse_failures"] == 1
    else:
        ranks = [0] * 3
        for place, shown in enumerate(best_first):
            ranks[row["shown_order"][shown]] = place + 1
        assert row["ranks"] == ranks


@pytest.mark.slow
def test_pairwise_through_the_endpoint(smollm2_server, ranked, tmp_path, capsys):
    out = tmp_path / "pw.jsonl"
    assert _generate("pairwise", ranked, "-o", str(out), "--max-new-tokens", "8",
                     *_endpoint_args(smollm2_server)) == 0
    row = read_rows(out)[0]
    assert len(row["comparisons"]) == 6
    for c in row["comparisons"]:
        v = parse_verdict(c["raw"])
        assert c["winner"] == (None if v is None else c["first"] if v == "A" else c["second"])
    assert "position consistency" in capsys.readouterr().out
    assert "position_consistency_rate" in read_card(out)["position_consistency"]
