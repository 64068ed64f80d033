"""`align generate combine --weights`: a weighted mean (or vote) of judges, e.g. verifier
scores mixed with an AI judge's, and the weights recorded in the card."""

from __future__ import annotations

import pytest

from alignment.data import read_card, read_rows, write_rows
from alignment.errors import ConfigError


def judged(judge: str, scores: list[list[float | None]]) -> list[dict]:
    return [{"id": f"p{i}", "prompt": f"prompt {i}", "responses": ["a", "b", "c"][:len(s)],
             "models": ["m"] * len(s), "scores": s, "judge": judge, "judge_raw": [""] * len(s)}
            for i, s in enumerate(scores)]


def test_weighted_mean_and_majority():
    from pipelines.combine import combine

    verifier = judged("verifiers", [[1.0, 0.0, 0.5], [None, 1.0]])
    rating = judged("rating", [[0.0, 1.0, 0.5], [0.25, 0.0]])
    rows, info = combine([verifier, rating], weights=[3, 1])
    assert rows[0]["scores"] == [0.75, 0.25, 0.5]
    assert rows[1]["scores"] == [0.25, 0.75]  # a missing score leaves the other judge's
    assert info["weights"] == {"1:verifiers": 3.0, "2:rating": 1.0}
    equal, _ = combine([verifier, rating])
    assert equal[0]["scores"] == [0.5, 0.5, 0.5]
    # a judge with weight 0 takes no part in the score (agreement still sees it)
    rows, info = combine([verifier, rating], weights=[0, 1])
    assert rows[0]["scores"] == [0.0, 1.0, 0.5] and info["agreement"] is not None
    # majority: each vote counts its judge's weight
    votes = [judged(f"j{k}", [[v]]) for k, v in enumerate([1, 1, 4])]
    assert combine(votes, "majority")[0][0]["scores"] == [1.0]
    assert combine(votes, "majority", weights=[1, 1, 3])[0][0]["scores"] == [4.0]


@pytest.mark.parametrize("weights,message", [
    ([1.0], "--weights has 1 value(s) for 2 inputs"),
    ([1.0, -1.0], "must be >= 0"),
    ([0.0, 0.0], "at least one > 0"),
])
def test_bad_weights_are_refused(weights, message):
    from pipelines.combine import combine

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        combine([judged("a", [[1.0, 0.0]]), judged("b", [[0.0, 1.0]])], weights=weights)


def test_combine_cli_weights_in_the_card(tmp_path, capsys):
    from alignment.cli import main

    a = write_rows(judged("verifiers", [[1.0, 0.0]]), tmp_path / "v.jsonl")
    b = write_rows(judged("rating", [[1.0, 5.0]]), tmp_path / "r.jsonl")
    out = tmp_path / "mixed.jsonl"
    assert main(["generate", "combine", str(a), str(b), "-o", str(out),
                 "--normalize", "minmax", "--weights", "1", "3"]) == 0
    assert read_rows(out)[0]["scores"] == [0.25, 0.75]
    card = read_card(out)
    assert card["weights"] == {"1:verifiers": 1.0, "2:rating": 3.0}
    assert main(["generate", "combine", str(a), str(b), "-o", str(out),
                 "--weights", "1", "2", "3"]) == 2
    assert "--weights has 3 value(s) for 2 inputs" in capsys.readouterr().err
