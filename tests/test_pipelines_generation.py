"""Each generation pipeline on the fake teacher: exact rows, counts and cards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines import evol_instruct, multi_turn, orca, responses, reversal, self_instruct
from pipelines.fake import FakeLLM, fake_reply
from pipelines.runner import text_id

def user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_orca_keeps_a_seeded_system_message(fake_llm):
    prompts = ["What is 2 + 2?", "Name a colour."]
    rows = orca.generate(prompts, fake_llm)
    assert [r["id"] for r in rows] == [text_id(p) for p in prompts]
    for row, prompt in zip(rows, prompts):
        system = orca.pick_system(prompt, seed=0)
        assert system in orca.SYSTEM_MESSAGES
        convo = [{"role": "system", "content": system}, user(prompt)]
        assert row["messages"] == convo + [
            {"role": "assistant", "content": fake_reply(convo)}]
        assert row["model_name"] == "fake-teacher"
    # the exact messages chosen for these prompts (seed 0)
    assert rows[0]["system_prompt"].startswith("Be faithful to the task's instructions.")
    assert rows[1]["system_prompt"].startswith("You are a meticulous analyst.")
    assert len(orca.SYSTEM_MESSAGES) == 16 == len(set(orca.SYSTEM_MESSAGES))


def test_responses_are_ranked_rows_without_scores():
    rows = responses.generate(["What is 2 + 2?"], [FakeLLM(name="a"), FakeLLM(name="b")], n=2)
    assert len(rows) == 1
    row = rows[0]
    convo = [user("What is 2 + 2?")]
    assert row == {
        "id": text_id("What is 2 + 2?"), "prompt": "What is 2 + 2?",
        "responses": [fake_reply(convo, 0, "a"), fake_reply(convo, 1, "a"),
                      fake_reply(convo, 0, "b"), fake_reply(convo, 1, "b")],
        "models": ["a", "a", "b", "b"], "scores": [None] * 4, "judge": "",
        "judge_raw": [""] * 4, "finish_reasons": ["stop"] * 4, "truncated": [False] * 4}
    assert len(set(row["responses"])) == 4
    from alignment.data import validate_rows

    validate_rows(rows, "ranked")


def test_reversal_teaches_both_directions(fake_llm):
    facts = [{"fact": "Paris is the capital of France"},
             {"fact": "Ada Lovelace was the first programmer", "person": True}]
    rows, counts = reversal.generate(facts, fake_llm)
    assert counts == {"facts": 2, "reversal_parse_failures": 0,
                      "reversal_rejected_subject_first": 0, "reversal_rejected_missing_side": 0,
                      "reversal_rejected_text_before_object": 0}
    pairs = [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows]
    assert pairs == [
        ("Tell me a fact about Paris.", "Paris is the capital of France."),
        ("Tell me a fact about the capital of France.", "The capital of France is Paris."),
        ("What is Paris?", "Paris is the capital of France."),
        ("What is the capital of France?", "The capital of France is Paris."),
        ("Tell me a fact about Ada Lovelace.", "Ada Lovelace was the first programmer."),
        ("Tell me a fact about the first programmer.", "The first programmer was Ada Lovelace."),
        ("Who was Ada Lovelace?", "Ada Lovelace was the first programmer."),
        ("Who was the first programmer?", "The first programmer was Ada Lovelace."),
    ]


def test_reversal_falls_back_and_counts_a_bad_teacher_answer():
    row = {"a": "Paris", "verb": "is", "b": "the capital of France", "generation": "Yes."}
    out, failed = reversal.expand(row)
    assert failed and out[1]["messages"][1]["content"] == "The capital of France is Paris."


def test_reversal_rejects_a_fact_it_cannot_split():
    from alignment.errors import DataError

    with pytest.raises(DataError, match="row 2: field `fact`"):
        reversal.parse_fact("Cats purr", "facts.jsonl", row=2)


def test_multi_turn_alternates_user_and_assistant(fake_llm):
    rows = multi_turn.generate(["How do tides work?"], fake_llm, turns=2)
    assert len(rows) == 1
    msgs = rows[0]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[0]["content"] == "How do tides work?"
    assert msgs[1]["content"] == fake_reply(msgs[:1])
    # the simulated user saw the persona and the conversation with roles swapped
    view = [{"role": "system", "content": multi_turn.USER_PERSONA},
            {"role": "assistant", "content": msgs[0]["content"]},
            {"role": "user", "content": msgs[1]["content"]}]
    assert msgs[2]["content"] == fake_reply(view)
    assert msgs[2]["content"].startswith("Thanks. Follow-up 1:")
    assert msgs[3]["content"] == fake_reply(msgs[:3])


def test_evol_instruct_eliminates_failed_evolutions(fake_llm):
    seeds = ["Explain how tides work on Earth.", "Write a short poem about rain.",
             "List three uses of copper."]
    rows, counts = evol_instruct.generate(seeds, fake_llm, rounds=2)
    assert [r["id"] for r in rows] == [text_id(s) for s in seeds]
    trails = [[(e["mutation"], e["eliminated"]) for e in r["evolution"]] for r in rows]
    assert trails == [[("DEEPENING", None), ("BREADTH", None)],
                      [("DEEPENING", "refusal"), ("DEEPENING", "refusal")],
                      [("CONCRETIZING", None), ("BREADTH", "too_short")]]
    prompts = [r["messages"][0]["content"] for r in rows]
    assert prompts[0] == ("Explain compound interest, then relate it to: Explain how tides "
                          "work on Earth, as a numbered list of steps")
    assert prompts[1] == seeds[1]  # both evolutions failed: the seed survives
    assert prompts[2] == "List three uses of copper, citing one common misconception."
    for r, p in zip(rows, prompts):
        assert r["messages"][1] == {"role": "assistant", "content": fake_reply([user(p)])}
    assert counts == {"evolutions": 6, "eliminated": {"refusal": 2, "too_short": 1},
                      "mutations": {"BREADTH": 2, "CONCRETIZING": 1, "DEEPENING": 3},
                      "never_evolved": 1}


@pytest.mark.parametrize("parent,evolved,reason", [
    ("Name a colour.", "name a colour!", "copy"),
    ("Name a colour.", "I'm sorry, but I can't do that for you.", "refusal"),
    ("Name a colour.", "Why?", "too_short"),
    ("Name a colour.", "Name a colour as the given prompt says.", "template_words"),
    ("Name a colour.", "Name a warm colour and explain why it feels warm.", None),
])
def test_evol_failure_reasons(parent, evolved, reason):
    assert evol_instruct.failure_reason(parent, evolved, min_words=4) == reason


def test_self_instruct_filters_by_rouge_l_and_answers(fake_llm):
    seeds = [json.loads(line)["instruction"]
             for line in open(self_instruct.runner.DATA_DIR / "seed_tasks.jsonl")]
    assert len(seeds) == 26
    rows, counts = self_instruct.generate(seeds, fake_llm, num_prompts=3, per_prompt=4)
    assert counts == {"requests": 3, "candidates": 13, "accepted": 9,
                      "rejected": {"rouge_l": 4}, "parse_failures": 0}
    prompts = [r["messages"][0]["content"] for r in rows]
    assert prompts == ["Evaluate a binary search.", "Plan a haiku about autumn.",
                       "Classify the rules of chess.", "Translate the French revolution.",
                       "Translate the phases of the moon.", "Classify plate tectonics.",
                       "Translate compound interest.", "Critique the causes of inflation.",
                       "Explain a polite complaint letter."]
    for r, p in zip(rows, prompts):
        assert r["messages"][1]["content"] == fake_reply([user(p)])


def test_rouge_l_and_novelty_filter():
    t = self_instruct.tokens
    assert self_instruct.rouge_l(t("the cat sat on the mat"), t("the cat sat on the mat")) == 1
    # LCS "the cat on the mat" = 5 of 6 and 5 of 7 tokens
    assert self_instruct.rouge_l(t("the cat sat on the mat"),
                                 t("the cat lay on the red mat")) == pytest.approx(
        2 * (5 / 6) * (5 / 7) / (5 / 6 + 5 / 7))
    accepted, rejected = self_instruct.novelty_filter(
        ["1. Write a poem about the sea.", "Write a poem about the sea please.",
         "Draw a picture of a cat.", "Hi", "Explain recursion to a beginner."],
        pool=["Summarise a news article."])
    assert accepted == ["Write a poem about the sea.", "Explain recursion to a beginner."]
    assert dict(rejected) == {"rouge_l": 1, "unsuitable": 1, "length": 1}


@pytest.mark.parametrize("module", [orca, responses, reversal, multi_turn, evol_instruct,
                                    self_instruct])
def test_help(module, capsys):
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--model" in text and "--ray" in text and "--dry-run" in text


def test_a_pipeline_runs_as_a_script():
    # each file is runnable on its own; one subprocess is enough (distilabel's import
    # takes several seconds)
    out = subprocess.run([sys.executable, "pipelines/reversal.py", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--facts" in out.stdout


def test_dry_run_cli_writes_rows_and_card(tmp_path):
    out = tmp_path / "orca.jsonl"
    assert orca.main(["--dry-run", "--limit", "3", "--dedup", "--drop-refusals",
                      "-o", str(out)]) == 0
    from alignment.data import read_card, read_rows

    rows = read_rows(out)
    assert len(rows) == 3 and all(r["messages"][0]["role"] == "system" for r in rows)
    card = read_card(out)
    assert card["rows"] == 3 and card["teacher"] == ["fake-teacher"]
    assert card["filters"] == {"failed_generations": 0, "exact_duplicates": 0, "refusals": 0}
    assert card["system_messages"] == list(orca.SYSTEM_MESSAGES)
