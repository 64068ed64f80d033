"""Strict judge parsers, agreement statistics and score bookkeeping, checked by hand."""

import pytest

from alignment.agreement import cohen_kappa, fleiss_kappa, judge_agreement, mean_kendall_tau
from pipelines.verdicts import parse_ranking, parse_rating, parse_verdict, ranks_from_scores
from pipelines.pairwise import consistency, pair_scores
from pipelines.ranking import _original, shown_order


@pytest.mark.parametrize("text,expected", [
    ("Rating: 4", (4, None)),
    ("  rating: 5  \nRationale: correct and concise.", (5, "correct and concise.")),
    ('{"rating": 2, "rationale": "off topic"}', (2, "off topic")),
    ('```json\n{"Rating": 3}\n```', (3, None)),
])
def test_rating_formats_that_parse(text, expected):
    assert parse_rating(text, (1, 5)) == expected


@pytest.mark.parametrize("text", [
    None, "", "4", "I'd rate it 4.", "Rating: 4/5", "Rating: 7", "Rating: 0",
    "Rating: four", "The answer is fine.\nRating: 4", "Rating: 4\nIt is fine.",
    '{"rating": "4"}', '{"rating": 4.5}', '{"rating": true}', '{"rating": 4, "extra": 1}',
    "**Rating:** 4",
])
def test_rating_anything_else_is_a_failure_not_a_number(text):
    assert parse_rating(text, (1, 5)) == (None, None)


def test_rating_respects_a_zero_based_scale():
    assert parse_rating("Rating: 0", (0, 4)) == (0, None)
    assert parse_rating("Rating: 5", (0, 4)) == (None, None)


@pytest.mark.parametrize("text,expected", [
    ("Ranking: C > A > B", [2, 0, 1]),
    ("[B] > [C] > [A]", [1, 2, 0]),
    ("A, C, B", [0, 2, 1]),
    ('{"ranking": ["B", "A", "C"]}', [1, 0, 2]),
])
def test_ranking_formats_that_parse(text, expected):
    assert parse_ranking(text, 3) == expected


@pytest.mark.parametrize("text", [
    "Ranking: C > A", "Ranking: C > A > A", "Ranking: C > A > B > D", "C > A > B\nbecause",
    "Ranking: C > A = B", "The best is C.", '{"ranking": "C > A > B"}', None,
])
def test_ranking_must_be_a_permutation_of_every_label(text):
    assert parse_ranking(text, 3) is None


@pytest.mark.parametrize("text,expected", [
    ("Verdict: A", "A"), ("B", "B"), ("[[A]]", "A"), ("verdict: B.", "B"),
    ('{"verdict": "B"}', "B"), ("Verdict: C", None), ("A and B are equal", None),
    ("Tie", None), ("Verdict: A\nA is better", None), ("", None),
])
def test_verdict_parse(text, expected):
    assert parse_verdict(text) == expected


def test_weighted_kappa_by_hand():
    # perfect agreement, then one 1-vs-3 disagreement on a 1..3 scale
    assert cohen_kappa([1, 2, 3], [1, 2, 3]) == 1.0
    # observed cost: one item at distance 2 (cost 1 after scaling by the span) / 4 items
    # expected cost: marginals a = {1: .5, 2: .25, 3: .25}, b = {1: .25, 2: .25, 3: .5}
    a, b = [1, 1, 2, 3], [1, 3, 2, 3]
    pa, pb = {1: .5, 2: .25, 3: .25}, {1: .25, 2: .25, 3: .5}
    expected = sum(pa[x] * pb[y] * ((x - y) / 2) ** 2 for x in pa for y in pb)
    assert cohen_kappa(a, b) == pytest.approx(1 - 0.25 / expected)
    # unweighted: observed agreement .75, chance .5*.25 + .25*.25 + .25*.5 = .3125
    assert cohen_kappa(a, b, weights=None) == pytest.approx((0.75 - 0.3125) / (1 - 0.3125))


def test_fleiss_kappa_by_hand():
    # 3 items, 3 raters: (all agree 1), (all agree 2), (1, 1, 2)
    items = [[1, 1, 1], [2, 2, 2], [1, 1, 2]]
    p_items = [1.0, 1.0, (2 * 2 + 1 * 1 - 3) / 6]
    p1, p2 = 5 / 9, 4 / 9
    p_bar, p_exp = sum(p_items) / 3, p1 ** 2 + p2 ** 2
    assert fleiss_kappa(items) == pytest.approx((p_bar - p_exp) / (1 - p_exp))


def test_kendall_tau_per_row_skips_rows_without_two_scores():
    tau, rows = mean_kendall_tau([[1, 2, 3], [1, None], [3, 1]], [[1, 2, 3], [2, 2], [1, 3]])
    assert rows == 2 and tau == pytest.approx(0.0)  # +1 and -1


def test_agreement_two_and_three_judges():
    two = judge_agreement({"a": [[1, 2, 3]], "b": [[1, 2, 3]]})
    assert two["weighted_kappa"] == 1.0 and two["kendall_tau"] == 1.0
    three = judge_agreement({"a": [[1, 2, 3]], "b": [[1, 2, 3]], "c": [[3, 2, 1]]})
    # a and b agree, c reverses them: taus +1, -1, -1; Fleiss over items (1,1,3), (2,2,2),
    # (3,3,1) by the formula in test_fleiss_kappa_by_hand
    assert three["mean_pairwise_kendall_tau"] == pytest.approx(-1 / 3, abs=1e-4)
    assert three["fleiss_kappa"] == pytest.approx(
        fleiss_kappa([[1, 1, 3], [2, 2, 2], [3, 3, 1]]), abs=1e-4)


def test_ranks_from_scores_ties_and_nulls():
    assert ranks_from_scores([2.0, None, 5.0, 2.0]) == [2, None, 1, 2]


def test_pairwise_scores_and_position_consistency_by_hand():
    comparisons = [  # pair (0, 1): consistent for 0; pair (0, 2): flips with position
        {"first": 0, "second": 1, "winner": 0, "p_first": None},
        {"first": 1, "second": 0, "winner": 0, "p_first": None},
        {"first": 0, "second": 2, "winner": 0, "p_first": None},
        {"first": 2, "second": 0, "winner": 2, "p_first": None},
        {"first": 1, "second": 2, "winner": None, "p_first": None},  # parse failure
        {"first": 2, "second": 1, "winner": 1, "p_first": None},
    ]
    assert pair_scores(3, comparisons) == [pytest.approx(0.75), 0.5, 0.25]
    c = consistency([{"comparisons": comparisons}])
    assert c["pairs_with_both_verdicts"] == 2 and c["position_consistency_rate"] == 0.5
    # first shown wins in (0,1), (0,2) and (2,0); not in (1,0) or (2,1)
    assert c["verdicts"] == 5 and c["first_shown_win_rate"] == pytest.approx(3 / 5)


def test_in_process_pair_scores_average_both_orders():
    comparisons = [{"first": 0, "second": 1, "winner": 0, "p_first": 0.9},
                   {"first": 1, "second": 0, "winner": 1, "p_first": 0.7}]
    # response 0 wins with .9 shown first and with 1 - .7 = .3 shown second
    assert pair_scores(2, comparisons) == [pytest.approx(0.6), pytest.approx(0.4)]


def test_shown_order_is_a_seeded_permutation_and_maps_back():
    order = shown_order("row-1", 7, seed=0)
    assert sorted(order) == list(range(7)) and order == shown_order("row-1", 7, seed=0)
    assert order != shown_order("row-1", 7, seed=1)
    shown = [f"r{i}" for i in order]
    assert _original(shown, order) == [f"r{i}" for i in range(7)]
