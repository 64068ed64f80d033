"""Rankings -> pairs: exact pairs per strategy, ties, nulls, margins, seeding."""

from __future__ import annotations

import pytest

from alignment.data import ranked_to_pairs


def ranked(id_: str, scores: list, prompt: str | list = "Q") -> dict:
    return {"id": id_, "prompt": prompt, "responses": [f"r{i}" for i in range(len(scores))],
            "models": ["m"] * len(scores), "scores": scores, "judge": "j",
            "judge_raw": [""] * len(scores)}


def short(pairs: list[dict]) -> list[tuple]:
    return [(p["id"], p["chosen"], p["rejected"], p["score_chosen"], p["score_rejected"])
            for p in pairs]


ROWS = [ranked("a", [3.0, None, 1.0, 5.0]), ranked("b", [2.0, 2.0]), ranked("c", [4.0, None])]


def test_best_worst():
    pairs, counts = ranked_to_pairs(ROWS, "best-worst")
    assert short(pairs) == [("a", "r3", "r2", 5.0, 1.0)]
    assert pairs[0]["prompt"] == "Q"
    assert counts == dict(rows=3, pairs=1, truncated_skipped=0, null_scores=2, ties=1,
                          below_margin=0, rows_without_pairs=2)


def test_all_pairs_with_margin():
    pairs, counts = ranked_to_pairs(ROWS, "all")
    assert short(pairs) == [("a", "r0", "r2", 3.0, 1.0), ("a", "r3", "r0", 5.0, 3.0),
                            ("a", "r3", "r2", 5.0, 1.0)]
    assert counts["ties"] == 1 and counts["null_scores"] == 2
    pairs, counts = ranked_to_pairs(ROWS, "all", margin=2.5)
    assert short(pairs) == [("a", "r3", "r2", 5.0, 1.0)]
    assert counts["below_margin"] == 2 and counts["pairs"] == 1


def test_best_random_is_seeded_and_order_independent():
    rows = [ranked(f"p{i}", [9.0, 1.0, 2.0, 3.0, 4.0]) for i in range(20)]
    pairs, counts = ranked_to_pairs(rows, "best-random", seed=7)
    assert counts["pairs"] == 20
    assert all(p["chosen"] == "r0" and p["rejected"] != "r0" for p in pairs)
    assert len({p["rejected"] for p in pairs}) > 1  # not always the same loser
    again, _ = ranked_to_pairs(list(reversed(rows)), "best-random", seed=7)
    assert sorted(short(again)) == sorted(short(pairs))
    other, _ = ranked_to_pairs(rows, "best-random", seed=8)
    assert short(other) != short(pairs)


def test_best_random_draws_only_past_the_margin():
    rows = [ranked(f"p{i}", [9.0, 8.5, 8.0, 1.0]) for i in range(10)]
    pairs, counts = ranked_to_pairs(rows, "best-random", margin=5)
    assert {p["rejected"] for p in pairs} == {"r3"} and counts["pairs"] == 10
    pairs, counts = ranked_to_pairs([ranked("x", [9.0, 8.5])], "best-random", margin=5)
    assert pairs == [] and counts["below_margin"] == 1


def test_ties_at_the_top_pick_the_first_best():
    pairs, _ = ranked_to_pairs([ranked("t", [5.0, 5.0, 1.0])], "best-worst")
    assert short(pairs) == [("t", "r0", "r2", 5.0, 1.0)]


def test_all_null_and_single_score_rows_give_no_pairs():
    pairs, counts = ranked_to_pairs([ranked("n", [None, None]), ranked("s", [1.0, None])], "all")
    assert pairs == [] and counts["null_scores"] == 3 and counts["rows_without_pairs"] == 2


def test_conversational_prompt_gives_conversational_pairs():
    prompt = [{"role": "user", "content": "Q"}]
    (pair,), _ = ranked_to_pairs([ranked("c", [1.0, 0.0], prompt=prompt)])
    assert pair["prompt"] == prompt
    assert pair["chosen"] == [{"role": "assistant", "content": "r0"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "r1"}]


def test_bad_strategy_or_margin():
    with pytest.raises(ValueError, match="unknown pairing strategy"):
        ranked_to_pairs(ROWS, "best-of-n")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        ranked_to_pairs(ROWS, margin=-1)
