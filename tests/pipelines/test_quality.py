"""Quality filters: exact counts on small hand-made rows."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from pipelines import quality


def sft(prompt: str, answer: str = "A fine answer.") -> dict:
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": answer}]}


def test_exact_dedup_normalises_case_punctuation_and_space():
    rows = [sft("What is the capital of France?"), sft("what is  the capital of france"),
            sft("What is the capital of Spain?"), sft("WHAT IS THE CAPITAL OF FRANCE!!")]
    kept, removed = quality.exact_dedup(rows)
    assert removed == 2
    assert [quality.prompt_text(r) for r in kept] == ["What is the capital of France?",
                                                      "What is the capital of Spain?"]


def test_align_data_and_the_pipelines_agree_on_what_a_duplicate_is():
    from alignment.data import dedup

    rows = [{"prompt": t} for t in ("A well-known fact.", "a well known fact", "e-mail me",
                                    "email me", "Meet at 12:20!", "meet at 12 20")]
    kept, removed = quality.exact_dedup(rows)
    assert [r["prompt"] for r in kept] == ["A well-known fact.", "e-mail me", "email me",
                                           "Meet at 12:20!"] and removed == 2
    assert dedup(rows) == (kept, removed)


def test_near_dedup_catches_small_edits_only():
    base = "please write a short story about a brave little robot who learns to paint"
    texts = [base, base + " today", "Please write a short story about a brave little robot "
             "who learns to paint!", "explain how a steam engine converts heat into motion",
             "list five fruits that are rich in vitamin c and easy to find"]
    mask = quality.near_duplicate_mask(texts, threshold=0.7)
    assert mask.tolist() == [False, True, True, False, False]
    kept, removed = quality.near_dedup([sft(t) for t in texts], threshold=0.7)
    assert removed == 2 and len(kept) == 3


def test_minhash_estimates_jaccard():
    a = " ".join(f"w{i}" for i in range(100))
    b = " ".join(f"w{i}" for i in range(50, 150))  # 3-grams: 48 shared of 148 -> 0.32
    sig = quality.minhash_signatures([a, b, a], num_perm=256, ngram=3)
    est = (sig[0] == sig[1]).mean()
    assert abs(est - 48 / 148) < 0.1
    assert (sig[0] == sig[2]).all()


def test_lsh_params_put_the_s_curve_at_the_threshold():
    bands, rows = quality.lsh_params(0.8, 64)
    assert bands * rows <= 64
    assert abs((1 / bands) ** (1 / rows) - 0.8) < 0.05


def test_length_and_refusal_filters():
    rows = [sft("q1", "ok"), sft("q2", "A complete answer here."),
            sft("q3", "I'm sorry, but I cannot help with that."),
            sft("q4", "As an AI, I have no opinions."), sft("q5", "x" * 500)]
    assert quality.response_length_filter(rows, min_chars=5)[1] == 1
    assert quality.response_length_filter(rows, max_chars=100)[1] == 1
    kept, removed = quality.refusal_filter(rows)
    assert removed == 2
    assert [quality.prompt_text(r) for r in kept] == ["q1", "q2", "q5"]


def test_ranked_rows_are_filtered_on_every_response():
    rows = [{"prompt": "p", "responses": ["fine", "I cannot do that"]},
            {"prompt": "q", "responses": ["fine", "also fine"]}]
    assert quality.refusal_filter(rows)[1] == 1


def test_drop_failed_counts_missing_turns():
    rows = [sft("q", None), sft("q2", ""), sft("q3"),
            {"messages": [{"role": "user", "content": None}, {"role": "assistant",
                                                               "content": "x"}]}]
    kept, removed = quality.drop_failed(rows)
    assert removed == 3 and kept == [sft("q3")]


def test_decontamination_by_ngram(tmp_path):
    question = ("A train leaves the station at nine and travels at sixty miles per hour "
                "towards a city two hundred miles away when does it arrive")
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": question, "answer": "12:20"}) + "\n"
                         + json.dumps({"question": "Short one?"}) + "\n")
    rows = [sft("Solve: " + question.upper() + "?"),                 # contains the 13-gram
            sft("A train leaves the station at nine and stops."),      # shares 7 words only
            sft("short one"),                                          # whole short text
            sft("Tell me about trains.")]
    kept, removed = quality.decontaminate(rows, eval_file, n=13)
    assert removed == 2
    assert [quality.prompt_text(r) for r in kept] == [
        "A train leaves the station at nine and stops.", "Tell me about trains."]
    # a smaller n catches the partial overlap too
    assert quality.decontaminate(rows, eval_file, n=5)[1] == 3


def test_apply_filters_reports_each_count(tmp_path):
    args = argparse.Namespace(dedup=True, near_dedup=0.7, min_chars=3, max_chars=None,
                              drop_refusals=True, decontaminate=None, ngram=13)
    rows = [sft("Name a colour."), sft("name a colour"), sft("Name a fruit.", "no"),
            sft("Name a planet.", "I cannot answer."), sft("Name a river please.")]
    kept, counts = quality.apply_filters(rows, args)
    assert counts == {"exact_duplicates": 1, "near_duplicates": 0, "length": 1,
                      "refusals": 1}
    assert len(kept) == 2


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single_inputs(n):
    rows = [sft("only one")] * n
    assert quality.exact_dedup(rows)[1] == 0
    assert quality.near_dedup(rows)[1] == 0
    assert quality.near_duplicate_mask([]).dtype == np.bool_
