"""Aggregation and agreement numbers against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from alignment import agreement
from annotation import aggregation as ag
from annotation.records import judge_ranks, to_record

OPTS = ["A", "B", "C"]
# record 1: both put A first, then disagree on B/C; record 2: bob reverses alice
REC1 = {"alice": {"A": 1, "B": 2, "C": 3}, "bob": {"A": 1, "B": 3, "C": 2}}
REC2 = {"alice": {"A": 1, "B": 2, "C": 3}, "bob": {"A": 3, "B": 2, "C": 1}}


def test_borda_points_and_order():
    # an option ranked r of n earns n - r: A = 2 + 2, B = 1 + 0, C = 0 + 1
    points = ag.borda(REC1.values(), OPTS)
    assert points == {"A": 4, "B": 1, "C": 1}
    assert ag.order_by_points(points, OPTS) == ["A", "B", "C"]
    assert ag.ranks_from_points(points, OPTS) == {"A": 1, "B": 2, "C": 2}
    assert ag.borda(REC2.values(), OPTS) == {"A": 2, "B": 2, "C": 2}


def test_majority_of_top_choices():
    assert ag.majority(list(REC1.values()), OPTS)[:2] == ("A", True)
    winner, absolute, votes = ag.majority(list(REC2.values()), OPTS)
    assert (winner, absolute) == (None, False) and votes == {"A": 1, "B": 0, "C": 1}
    # a tie for first splits the vote
    _, _, votes = ag.majority([{"A": 1, "B": 1, "C": 3}], OPTS)
    assert votes == {"A": 0.5, "B": 0.5, "C": 0}


def test_kendall_w_by_hand():
    # rank sums A=2, B=5, C=5; mean 4; S = 4 + 1 + 1 = 6; W = 12*6 / (2^2 * (27 - 3)) = 0.75
    assert agreement.kendall_w(list(REC1.values()), OPTS) == pytest.approx(0.75)
    # sums 4, 4, 4: S = 0
    assert agreement.kendall_w(list(REC2.values()), OPTS) == pytest.approx(0.0)
    assert agreement.kendall_w([REC1["alice"]], OPTS) is None
    # ties: mid-ranks (1.5, 1.5, 3) and (1, 2, 3): sums 2.5, 3.5, 6, mean 4, S = 6.5;
    # T = 2^3 - 2 = 6; W = 12*6.5 / (4*24 - 2*6) = 78 / 84
    tied = [{"A": 1, "B": 1, "C": 3}, {"A": 1, "B": 2, "C": 3}]
    assert agreement.kendall_w(tied, OPTS) == pytest.approx(78 / 84)


def test_krippendorff_alpha_ordinal_by_hand():
    # Six units (record, option), two values each: (1,1) (2,3) (3,2) (1,3) (2,2) (3,1).
    # n_1 = n_2 = n_3 = 4, n = 12. Ordinal distances: d(1,2) = d(2,3) = (4+4 - 4)^2 = 16,
    # d(1,3) = (12 - 4)^2 = 64. Observed: pairs (2,3) four times, (1,3) four times:
    # D_o = (4*16 + 4*64) / 12. Expected: D_e = 2*(16*16 + 16*16 + 16*64) / (12*11).
    # alpha = 1 - D_o/D_e = 1 - 55/48 = -7/48.
    records = [(OPTS, REC1), (OPTS, REC2)]
    assert agreement.krippendorff_alpha(records, ["alice", "bob"]) == pytest.approx(-7 / 48)
    assert agreement.krippendorff_alpha([(OPTS, {"alice": REC1["alice"]})], ["alice"]) is None
    same = {"alice": REC1["alice"], "bob": REC1["alice"]}
    assert agreement.krippendorff_alpha([(OPTS, same)], ["alice", "bob"]) == pytest.approx(1.0)


def test_kendall_tau_b_by_hand():
    # human points A4 B1 C1 vs judge ranks A1 B3 C2 (negated: higher is better):
    # (A,B) concordant, (A,C) concordant, (B,C) tied in points: n_c=2, n_d=0, t_a=1
    # tau_b = 2 / sqrt(3 * 2)
    assert agreement.kendall_tau([4, 1, 1], [-1, -3, -2]) == pytest.approx(2 / math.sqrt(6))
    assert agreement.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert agreement.kendall_tau([2, 2, 2], [1, 2, 3]) is None


def test_annotators_and_judges_get_the_same_tau():
    # `align annotate pull` (human points vs judge ranks) and `align generate combine`
    # (judge vs judge, per row) measure with one function
    from annotation import pull

    points, judge = [4, 1, 1], [-1, -3, -2]
    record = pull.PulledRecord(
        id="r", prompt="p", responses=["a", "b", "c"], options=OPTS, rankings=dict(REC1),
        ratings={}, comments={}, judge_ranks={"A": 1, "B": 3, "C": 2},
        judge_scores=[None] * 3)
    pull.aggregate([record])
    combined = agreement.judge_agreement({"humans": [points], "judge": [judge]})
    assert record.tau_judge == agreement.kendall_tau(points, judge)
    assert combined["kendall_tau"] == round(record.tau_judge, 4) == round(2 / math.sqrt(6), 4)


def test_judge_ranks_from_scores_and_suggestion_record():
    row = {"id": "x", "prompt": "p", "responses": ["a", "bb", "ccc"], "scores": [3.0, None, 9.0],
           "judge": "my judge (v2)!", "models": ["m"] * 3, "judge_raw": [""] * 3}
    assert judge_ranks(row) == [2, 3, 1]
    assert judge_ranks({**row, "ranks": [1, 2, 3]}) == [1, 2, 3]
    record = to_record(row, {"ranking": "q1", "best_quality": "q2"}, (0.0, 10.0))
    assert record["external_id"] == "x"
    assert record["metadata"]["length_3"] == 3 and "judge_score_2" not in record["metadata"]
    ranking, rating = record["suggestions"]
    assert ranking["value"] == [{"value": "response_1", "rank": 2},
                                {"value": "response_2", "rank": 3},
                                {"value": "response_3", "rank": 1}]
    assert "score" not in ranking  # one response has no score: no per-item scores
    assert ranking["agent"] == "my judge -v2--"
    assert rating["value"] == 5 and rating["score"] == pytest.approx(0.9)


def test_human_rankings_pair_by_the_data_layers_rules():
    from alignment.data import ranked_to_pairs
    from annotation import pull

    record = pull.PulledRecord(id="r1", prompt="p", responses=["a", "b", "c"], options=OPTS,
                               rankings=dict(REC1), ratings={}, comments={},
                               judge_ranks=None, judge_scores=[None] * 3)
    pull.aggregate([record])
    # points A 4, B 1, C 1: B and C tie for worst, and the first of them is the rejected
    # one, as when AI scores tie (alignment.data.pairs)
    pairs = pull.to_pairs([record])
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("a", "b")]
    assert (pairs[0]["score_chosen"], pairs[0]["score_rejected"]) == (2.0, 0.5)
    ranked = pull.to_ranked([record])
    for strategy in ("best-worst", "best-random", "all"):
        assert pull.to_pairs([record], strategy) == ranked_to_pairs(ranked, strategy)[0]
    assert pull.to_pairs([record], min_annotators=3) == []
