"""How a response ended: every teacher reports a finish reason (``stop``, or ``length``
when the token limit cut it off), rows carry ``finish_reasons`` and ``truncated``, cards
count them, and pairs leave truncated responses out unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.data import ranked_to_pairs, read_card, read_rows, write_rows
from pipelines.llms import BatchedTransformersLLM, finish_column, make_llm

END = "<|im_end|>"  # the tiny tokenizer's end token


def _chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="session")
def echo_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model without a chat template: the prompt is the user's text as is.

    With tied embeddings the random tiny model repeats its last input token, so a prompt
    that ends with the end token ends at once (``stop`` after one token, even when one
    token is all it may write) and any other prompt runs on to the limit (``length``)."""
    import shutil

    out = tmp_path_factory.mktemp("echo") / "model"
    shutil.copytree(tiny_model, out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


# ---------------------------------------------------------------- the in-process teacher

def test_a_small_limit_cuts_every_answer(varied_model):
    llm = BatchedTransformersLLM(model=str(varied_model), batch_size=2)
    llm.load()
    out = llm.generate_outputs([_chat("hi"), _chat("What is the capital of France?")],
                               num_generations=2, max_new_tokens=4, do_sample=False)
    for o in out:
        assert o["finish_reason"] == ["length", "length"]
        assert o["statistics"]["output_tokens"] == [4, 4]


def test_answers_that_end_say_stop(tiny_model):
    # sampled, so some answers end; the seed makes the run the same every time
    llm = BatchedTransformersLLM(model=str(tiny_model), batch_size=8, seed=0)
    llm.load()
    prompts = ["hi", "What is the capital of France?", "Explain photosynthesis in simple terms",
               "Sort the numbers 3 1 2", "Rate the response", "hola", "Paris"]
    out = llm.generate_outputs([_chat(p) for p in prompts], num_generations=4,
                               max_new_tokens=64, temperature=1.5)
    seen = []
    for o in out:
        for reason, tokens in zip(o["finish_reason"], o["statistics"]["output_tokens"]):
            assert reason == ("stop" if tokens < 64 else "length")
            seen.append(reason)
    assert "stop" in seen and "length" in seen


def test_an_answer_ending_on_its_last_allowed_token_stopped(echo_model):
    llm = BatchedTransformersLLM(model=str(echo_model))
    llm.load()
    out = llm.generate_outputs([_chat(f"hello{END}"), _chat("hello")], max_new_tokens=1,
                               do_sample=False)
    assert [o["finish_reason"] for o in out] == [["stop"], ["length"]]
    assert [o["statistics"]["output_tokens"] for o in out] == [[1], [1]]


# ---------------------------------------------------------------- an OpenAI-compatible endpoint

@pytest.fixture(scope="module")
def echo_server(echo_model):
    from pipelines.server import LocalServer

    with LocalServer(str(echo_model), served_name="echo") as server:
        yield server


def test_the_local_server_reports_the_decoders_finish_reason(echo_server):
    import openai

    client = openai.OpenAI(base_url=echo_server.base_url, api_key="not-needed")
    reasons = {}
    for text in (f"hello{END}", "hello"):
        for logprobs in (False, True):  # batched, and one by one with log-probabilities
            reply = client.chat.completions.create(
                model="echo", messages=_chat(text), max_tokens=1, temperature=0, n=2,
                logprobs=logprobs, top_logprobs=2 if logprobs else None)
            reasons[text, logprobs] = [c.finish_reason for c in reply.choices]
            assert reply.usage.completion_tokens == 2  # one token each: the limit
    assert reasons == {(f"hello{END}", False): ["stop", "stop"],
                       (f"hello{END}", True): ["stop", "stop"],
                       ("hello", False): ["length", "length"],
                       ("hello", True): ["length", "length"]}


def test_the_endpoint_teacher_keeps_finish_reason(echo_server):
    llm = make_llm("echo", echo_server.base_url, max_new_tokens=3, do_sample=False)
    llm.load()
    out = llm.generate_outputs([_chat(f"hello{END}"), _chat("hello")], num_generations=2,
                               **llm.generation_kwargs)
    assert [o["finish_reason"] for o in out] == [["stop", "stop"], ["length", "length"]]
    assert out[1]["generations"] == ["lololo", "lololo"]


def test_endpoint_finish_reasons_reach_the_pipelines_rows(echo_server):
    from pipelines import responses

    llm = make_llm("echo", echo_server.base_url, max_new_tokens=3, do_sample=False)
    rows = responses.generate([f"hello{END}", "hello"], [llm], n=2)
    assert [r["finish_reasons"] for r in rows] == [["stop", "stop"], ["length", "length"]]
    assert [r["truncated"] for r in rows] == [[False, False], [True, True]]


# ---------------------------------------------------------------- pairs

def _ranked(id_: str, scores: list, **extra) -> dict:
    return {"id": id_, "prompt": "Q", "responses": [f"r{i}" for i in range(len(scores))],
            "models": ["m"] * len(scores), "scores": scores, "judge": "j",
            "judge_raw": [""] * len(scores), **extra}


TRUNCATED = [
    # the best response was cut off: the flag says so
    _ranked("a", [5.0, 3.0, 1.0], truncated=[True, False, False],
            finish_reasons=["length", "stop", "stop"]),
    # only the finish reason says so (a row from another tool)
    _ranked("b", [4.0, 2.0], finish_reasons=["stop", "length"]),
    # nothing about truncation: paired as before
    _ranked("c", [2.0, 1.0]),
]


def test_pairs_skip_truncated_responses_and_count_them():
    pairs, counts = ranked_to_pairs(TRUNCATED, "best-worst")
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("a", "r1", "r2"), ("c", "r0", "r1")]
    assert counts["truncated_skipped"] == 2 and counts["rows_without_pairs"] == 1
    assert counts["null_scores"] == 0 and counts["pairs"] == 2


def test_pairs_keep_truncated_responses_when_asked():
    pairs, counts = ranked_to_pairs(TRUNCATED, "best-worst", keep_truncated=True)
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("a", "r0", "r2"), ("b", "r0", "r1"), ("c", "r0", "r1")]
    assert counts["truncated_skipped"] == 0


def test_a_truncated_response_without_a_score_is_counted_once():
    row = _ranked("d", [None, 2.0, 1.0], truncated=[True, False, False])
    _, counts = ranked_to_pairs([row], "all")
    assert counts["truncated_skipped"] == 1 and counts["null_scores"] == 0


def test_align_data_pairs_keep_truncated(tmp_path):
    from alignment.cli import main

    src = write_rows(TRUNCATED, tmp_path / "ranked.jsonl")
    out, kept = tmp_path / "pairs.jsonl", tmp_path / "kept.jsonl"
    assert main(["data", "pairs", str(src), str(out)]) == 0
    assert [(p["id"], p["chosen"]) for p in read_rows(out)] == [("a", "r1"), ("c", "r0")]
    card = read_card(out)
    assert card["counts"]["pairs_truncated_skipped"] == 2
    assert card["conversion"]["keep_truncated"] is False
    assert main(["data", "pairs", str(src), str(kept), "--keep-truncated"]) == 0
    assert [(p["id"], p["chosen"]) for p in read_rows(kept)] == [
        ("a", "r0"), ("b", "r0"), ("c", "r0")]
    assert read_card(kept)["counts"]["pairs_truncated_skipped"] == 0
    # KTO rows come from the same pairs
    kto = tmp_path / "kto.jsonl"
    assert main(["data", "convert", str(src), "--to", "kto", str(kto)]) == 0
    assert [(r["completion"], r["label"]) for r in read_rows(kto)] == [
        ("r1", True), ("r2", False), ("r0", True), ("r1", False)]


# ---------------------------------------------------------------- pipelines (fake teacher)

def test_dry_run_rows_say_how_answers_ended_and_the_card_counts_them(tmp_path):
    from pipelines import orca
    from pipelines.fake import cut, fake_reply
    from alignment.data import read_prompts

    out = tmp_path / "orca.jsonl"
    # the fake teacher's tokens are words: 27 cuts some of its step-by-step answers
    assert orca.main(["--dry-run", "--limit", "6", "--max-new-tokens", "27",
                      "-o", str(out)]) == 0
    rows = read_rows(out)
    expected = []
    for prompt, row in zip(read_prompts(orca.runner.DATA_DIR / "seed_tasks.jsonl", 6), rows):
        convo = [{"role": "system", "content": orca.pick_system(prompt, 0)}, _chat(prompt)[0]]
        text, reason = cut(fake_reply(convo), 27)
        assert row["messages"][-1]["content"] == text
        assert row["finish_reasons"] == [reason] and row["truncated"] is (reason == "length")
        expected.append(reason)
    assert set(expected) == {"stop", "length"}
    card = read_card(out)
    assert card["truncated_responses"] == expected.count("length")
    assert card["finish_reasons"] == {"length": expected.count("length"),
                                      "stop": expected.count("stop")}


def test_multi_turn_lists_every_assistant_turns_finish_reason():
    from pipelines import multi_turn
    from pipelines.fake import FakeLLM

    # the fake assistant's answers and the simulated user's questions have over 8 words
    llm = FakeLLM(generation_kwargs={"max_new_tokens": 8})
    (row,) = multi_turn.generate(["How do tides work on Earth and why?"], llm, turns=2)
    answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
    assert len(answers) == 2 and all(len(a.split()) <= 8 for a in answers)
    assert row["finish_reasons"] == ["length", "length"] and row["truncated"] is True


def test_responses_keep_the_prompts_fields_for_verify(tmp_path):
    from pipelines import cli

    specs = [{"name": "max_words", "params": {"limit": 3}}]
    prompts = write_rows([
        {"prompt": "Name a colour.", "verifiers": specs, "task": "colour", "source": "mine",
         "split": "train", "id": "p1"},
        {"prompt": "Say hi.", "verifiers": [{"name": "lowercase"}], "task": "greet",
         "split": "heldout"}], tmp_path / "constrained.jsonl")
    ranked, verified = tmp_path / "ranked.jsonl", tmp_path / "verified.jsonl"
    assert cli.main(["responses", "--prompts", str(prompts), "--dry-run", "--n", "2",
                     "--max-new-tokens", "4", "-o", str(ranked)]) == 0
    rows = read_rows(ranked)
    assert [(r["prompt"], r["task"], r["split"]) for r in rows] == [
        ("Name a colour.", "colour", "train"), ("Say hi.", "greet", "heldout")]
    assert rows[0]["verifiers"] == specs and rows[0]["source"] == "mine"
    assert rows[0]["id"] != "p1"  # the ranked id is the prompt's (docs/schemas.md)
    for row in rows:
        assert row["finish_reasons"] == ["length", "length"]
        assert row["truncated"] == [True, True]
    assert read_card(ranked)["truncated_responses"] == 4
    assert cli.main(["verify", str(ranked), "-o", str(verified)]) == 0
    checked = read_rows(verified)
    assert [r["verifiers"] for r in checked] == [specs, [{"name": "lowercase"}]]
    assert all(len(r["verifier_results"]) == 2 for r in checked)


def test_preference_rows_and_pairs_leave_truncated_responses_out():
    from pipelines import preference

    journalled = {"instruction": "Q?", "generations": ["a", "b", "c"], "model_name": "t",
                  "scores": [5.0, 3.0, 1.0], "judge_raw": ["", "", ""], "judge": "j",
                  "judge_digit_mass": [1.0, 1.0, 1.0],
                  finish_column("responses"): ["length", "stop", "stop"]}
    counts = dict.fromkeys(["teacher_failures", "rows_dropped_under_2_responses",
                            "responses", "judge_failures", "low_digit_mass_under_0.5",
                            "_mass_sum"], 0)
    (row,) = preference.to_ranked([journalled], counts)
    assert row["finish_reasons"] == ["length", "stop", "stop"]
    assert row["truncated"] == [True, False, False]
    (pair,), _ = ranked_to_pairs([row])
    assert (pair["chosen"], pair["rejected"]) == ("b", "c")
    assert preference.parser().parse_args(["--keep-truncated"]).keep_truncated is True
    assert preference.PreferenceConfig().keep_truncated is False


def test_reversal_rows_carry_the_reversals_finish_reason():
    from pipelines import reversal

    row = {"a": "Paris", "verb": "is", "b": "the capital of France",
           "generation": "The capital of France is Paris.",
           finish_column(reversal.REVERSE): "length"}
    rows, failed = reversal.expand(row)
    assert failed is None
    assert [(r["kind"], r["finish_reasons"], r["truncated"]) for r in rows] == [
        ("statement", [], False), ("statement_reversed", ["length"], True),
        ("qa_forward", [], False), ("qa_reverse", ["length"], True)]
    # a refused reversal is replaced by the template: no answer is the teacher's
    rows, failed = reversal.expand({**row, "generation": "Yes."})
    assert failed and all(r["finish_reasons"] == [] and not r["truncated"] for r in rows)
