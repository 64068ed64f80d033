"""Polars filters: normalised exact dedup, length filters, statistics."""

from __future__ import annotations

from alignment.data import dedup, normalised, prompt_length_filter, stats


def test_dedup_ignores_case_punctuation_and_whitespace():
    rows = [{"prompt": "What is  AI?", "n": 1}, {"prompt": "what is ai", "n": 2},
            {"prompt": "What is ML?", "n": 3}, {"prompt": " WHAT, is AI!! ", "n": 4}]
    kept, removed = dedup(rows)
    assert [r["n"] for r in kept] == [1, 3] and removed == 2


def test_dedup_on_conversations():
    a = {"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Yo"}]}
    b = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo."}]}
    c = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]}
    d = {"messages": [{"role": "user", "content": "bye"}, {"role": "assistant", "content": "hey"}]}
    # by default the prompt decides: the same question answered twice is a duplicate
    kept, removed = dedup([a, b, c, d])
    assert kept == [a, d] and removed == 2
    kept, removed = dedup([a, b, c, d], column="messages")
    assert kept == [a, c, d] and removed == 1


def test_normalised_turns_punctuation_into_spaces():
    assert normalised(["  Well-known,  FACTS!", "12:20"]).to_list() == ["well known facts",
                                                                      "12 20"]


def test_prompt_length_filter():
    rows = [{"prompt": "x" * n} for n in (1, 5, 10, 50)]
    kept, removed = prompt_length_filter(rows, min_chars=5, max_chars=10)
    assert [len(r["prompt"]) for r in kept] == [5, 10] and removed == 2


def test_stats():
    rows = [{"prompt": "ab", "score": 1.0}, {"prompt": "abcdef", "score": 2.0}]
    assert stats(rows) == {"rows": 2, "columns": ["prompt", "score"],
                           "lengths": {"prompt": {"min": 2, "mean": 4.0, "median": 4.0,
                                                  "max": 6}}}
