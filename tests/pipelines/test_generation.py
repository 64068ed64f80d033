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


EVOL_SEEDS = ["Explain how tides work on Earth.", "Write a short poem about rain.",
              "List three uses of copper.", "Describe how a bicycle gear works.",
              "Plan a week of vegetarian dinners."]


def test_evol_instruct_chains_in_depth_and_splits_breadth_into_rows(fake_llm):
    rows, counts = evol_instruct.generate(EVOL_SEEDS, fake_llm, rounds=3)
    chains = [r for r in rows if r["evolution_type"] == "depth"]
    breadth = {r["id"]: r for r in rows if r["evolution_type"] == "breadth"}
    assert rows[:len(chains)] == chains  # chains first, in seed order
    assert [r["id"] for r in chains] == [text_id(s) for s in EVOL_SEEDS]
    made = 0
    for seed, chain in zip(EVOL_SEEDS, chains):
        assert chain["source_id"] is None and chain["source_round"] is None
        # replay the chain: only in-depth survivors move it on
        instruction = seed
        for entry in chain["evolution"]:
            assert entry["parent"] == instruction
            assert entry["mutation"] == evol_instruct.pick_mutation(instruction, 42,
                                                                    entry["round"])
            survived = entry["eliminated"] is None
            if entry["mutation"] == "BREADTH" and survived:
                made += 1
                row = breadth[entry["breadth_id"]]
                assert row["messages"][0]["content"] == entry["evolved"].strip()
                assert (row["source_id"], row["source_round"]) == (chain["id"],
                                                                   entry["round"])
                assert row["evolution"] == [entry]
            else:
                assert entry["breadth_id"] is None
                if survived:
                    instruction = entry["evolved"].strip()
        assert chain["messages"][0]["content"] == instruction
    assert made == len(breadth) == counts["breadth_rows"] == 3
    for r in rows:
        p = r["messages"][0]["content"]
        assert r["messages"][1] == {"role": "assistant", "content": fake_reply([user(p)])}
    # the vegetarian chain: its round-1 breadth prompt became a row and the chain itself
    # went on from the seed, evolved in depth in round 2
    veg = chains[4]
    assert [(e["mutation"], e["eliminated"]) for e in veg["evolution"]] == [
        ("BREADTH", None), ("CONCRETIZING", None), ("CONSTRAINTS", "refusal")]
    assert veg["messages"][0]["content"] == ("Plan a week of vegetarian dinners, with two "
                                             "worked examples.")
    spun_off = breadth[veg["evolution"][0]["breadth_id"]]["messages"][0]["content"]
    assert spun_off.startswith("Outline the phases of the moon, then relate it to: Plan")
    assert spun_off not in [c["messages"][0]["content"] for c in chains]
    assert counts == {"evolutions": 15,
                      "eliminated": {"refusal": 2, "template_words": 1, "too_short": 4},
                      "mutations": {"BREADTH": 4, "CONCRETIZING": 2, "CONSTRAINTS": 7,
                                    "DEEPENING": 1, "INCREASED_REASONING_STEPS": 1},
                      "never_evolved": 1, "depth_rows": 5, "breadth_rows": 3,
                      "breadth_duplicates": 0}


def test_evol_breadth_prompts_already_in_the_data_are_dropped_and_counted():
    entry = {"round": 1, "mutation": "BREADTH", "parent": "a", "evolved": " Name a dog. ",
             "eliminated": None, "breadth_id": text_id("Name a dog.")}
    chains = [{"id": text_id("Name a dog."), "evolution": []},  # already a seed
              {"id": "c2", "evolution": [entry]},
              {"id": "c3", "evolution": [{**entry, "evolved": "Name a cat.",
                                          "breadth_id": text_id("Name a cat.")},
                                         {**entry, "round": 2, "evolved": "Name a cat.",
                                          "breadth_id": text_id("Name a cat.")}]}]
    rows, sources, duplicates = evol_instruct.breadth_rows(chains)
    assert [r["instruction"] for r in rows] == ["Name a cat."]
    assert sources == {text_id("Name a cat."): {"source_id": "c3", "source_round": 1}}
    assert duplicates == 2


@pytest.mark.parametrize("parent,evolved,reason", [
    ("Name a colour.", "name a colour!", "copy"),
    ("Name a colour.", "I'm sorry, but I can't do that for you.", "refusal"),
    ("Name a colour.", "Why?", "too_short"),
    ("Name a colour.", "Name a colour as the given prompt says.", "template_words"),
    ("Name a colour.", "Name a warm colour and explain why it feels warm.", None),
])
def test_evol_failure_reasons(parent, evolved, reason):
    assert evol_instruct.failure_reason(parent, evolved, min_words=4) == reason


def seed_tasks() -> list[str]:
    return [json.loads(line)["instruction"]
            for line in open(self_instruct.runner.DATA_DIR / "seed_tasks.jsonl")]


def query_journal_lines() -> int:
    from pipelines.runner import cache_root

    return sum(1 for f in (cache_root() / "align-self-instruct-queries").rglob("*.jsonl")
               for _ in open(f, encoding="utf-8"))


def test_self_instruct_grows_the_pool_over_rounds_to_the_target(fake_llm, capsys):
    seeds = seed_tasks()
    assert len(seeds) == 26
    settings = dict(num_instructions=12, num_prompts=3, per_prompt=4)
    # one round is not enough, and the run says so
    first, counts = self_instruct.generate(seeds, fake_llm, max_rounds=1, **settings)
    assert counts["stopped"] == "max_rounds" and len(first) == 11
    assert counts["rounds"] == [{"round": 1, "requests": 3, "asked": 12, "parsed": 14,
                                 "parse_failures": 0,
                                 "rejected": {"length": 0, "rouge_l": 3, "unsuitable": 0},
                                 "accepted": 11, "surplus": 0, "pool": 37}]
    assert "--max-rounds 1 reached: 11 of 12 instructions" in capsys.readouterr().out
    assert query_journal_lines() == 3

    rows, counts = self_instruct.generate(seeds, fake_llm, max_rounds=5, **settings)
    printed = capsys.readouterr().out
    # round 1 came back from its journal; only round 2 asked the teacher
    assert query_journal_lines() == 6
    assert counts["stopped"] == "target_reached" and len(rows) == 12
    assert "stopped after 2 round(s), target reached: 12 of 12" in printed
    assert "self-instruct round 2: asked 12 instructions in 3 requests, parsed 13" in printed
    second = counts["rounds"][1]
    assert (second["accepted"], second["surplus"], second["rejected"]["rouge_l"]) == (1, 4, 8)
    assert [r["round"] for r in rows] == [1] * 11 + [2]
    assert [r["messages"] for r in rows[:11]] == [r["messages"] for r in first]
    assert {k: counts[k] for k in ("requests", "candidates", "accepted", "rejected")} == {
        "requests": 6, "candidates": 27, "accepted": 12, "rejected": {"rouge_l": 11}}
    prompts = [r["messages"][0]["content"] for r in rows]
    for r, p in zip(rows, prompts):
        assert r["messages"][1]["content"] == fake_reply([user(p)])
    # nothing accepted is too close to the seeds or to another accepted instruction
    t = self_instruct.tokens
    for i, p in enumerate(prompts):
        assert all(self_instruct.rouge_l(t(p), t(q)) < 0.7 for q in seeds + prompts[:i])

    # round 2 was judged against the grown pool: some of its candidates pass against the
    # seeds alone and fail only against what round 1 accepted
    candidates, _ = self_instruct.ask(seeds + prompts[:11], fake_llm, 2, num_prompts=3,
                                      per_prompt=4, examples=3, seed=0, batch_size=8)
    assert query_journal_lines() == 6
    against_seeds, _ = self_instruct.novelty_filter(candidates, seeds)
    against_pool, _ = self_instruct.novelty_filter(candidates, seeds + prompts[:11])
    assert len(against_pool) == 5 < len(against_seeds)
    blocked = [c for c in against_seeds if c not in against_pool]
    assert all(any(self_instruct.rouge_l(t(c), t(q)) >= 0.7 for q in prompts[:11])
               for c in blocked)


def test_self_instruct_stops_when_a_round_adds_nothing_and_says_so(tmp_path, capsys):
    from alignment.data import read_card, read_rows

    out = tmp_path / "si.jsonl"
    assert self_instruct.main(["--dry-run", "--num-instructions", "100", "--max-rounds", "6",
                               "--num-prompts", "2", "--per-prompt", "12",
                               "--rouge-threshold", "0.3", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stopped after 2 round(s), round 2 added no new instruction: 10 of 100" in printed
    assert "self-instruct round 1: asked 24 instructions in 2 requests" in printed
    card = read_card(out)
    assert card["stopped"] == "no_new_instructions" and card["target"] == 100
    assert [c["accepted"] for c in card["rounds"]] == [10, 0]
    assert card["rounds"][1]["rejected"]["rouge_l"] > 0
    rows = read_rows(out)
    assert card["rows"] == len(rows) == 10 and {r["round"] for r in rows} == {1}


def test_self_instruct_rejects_an_empty_target(fake_llm):
    from alignment.errors import ConfigError

    with pytest.raises(ConfigError, match="--num-instructions"):
        self_instruct.generate(seed_tasks(), fake_llm, num_instructions=0)


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
