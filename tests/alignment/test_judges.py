"""RatingJudge: the score is the expectation over the rating digits' probabilities."""

import json
import math

import pytest

from alignment.errors import ConfigError
from alignment.judges import RatingJudge
from tests.helpers import CHECKS, digit_model


@pytest.fixture(autouse=True)
def _float32(monkeypatch):
    # exact-logit fixtures and greedy-equality checks compare to the last digit: run them in
    # float32 on every CPU (bf16 CPUs would otherwise pick bf16 and round the logits)
    monkeypatch.setenv("ALIGN_DTYPE", "float32")


def _expected(logits: dict[str, float], vocab: int) -> tuple[dict[str, float], float]:
    z = sum(math.exp(v) for v in logits.values()) + (vocab - len(logits))
    return {t: math.exp(v) / z for t, v in logits.items()}, z


def test_score_is_the_expected_digit(tiny_model, tmp_path):
    logits = {"2": 12.0, "4": 12.0 + math.log(3.0)}  # P(4) = 3 P(2)
    path = digit_model(tiny_model, tmp_path / "m", logits)
    judge = RatingJudge(str(path), batch_size=2)
    [v] = judge.score(["What is 2+2?"], ["4"])
    probs, _ = _expected(logits, len(judge.tokenizer))
    mass = probs["2"] + probs["4"]
    assert v["score"] == pytest.approx(2 * 0.25 + 4 * 0.75, abs=1e-4)
    assert v["probs"] == pytest.approx([0, 0.25, 0, 0.75, 0], abs=1e-4)
    assert v["digit_mass"] == pytest.approx(mass, rel=1e-4)
    raw = json.loads(v["raw"])
    assert raw["top_tokens"][0][0] == "4" and raw["truncated"] is False


def test_low_digit_mass_is_recorded_and_can_withhold(tiny_model, tmp_path):
    # the model would rather say "x" than any digit
    path = digit_model(tiny_model, tmp_path / "m", {"4": 14.0, "x": 24.0})
    kept = RatingJudge(str(path)).score(["q"], ["a"])[0]
    assert kept["score"] == pytest.approx(4.0, abs=1e-3) and kept["digit_mass"] < 1e-3
    withheld = RatingJudge(str(path), min_digit_mass=0.01).score(["q"], ["a"])[0]
    assert withheld["score"] is None
    assert "below min_digit_mass" in json.loads(withheld["raw"])["error"]


def test_scale_zero_to_four(tiny_model, tmp_path):
    path = digit_model(tiny_model, tmp_path / "m", {"0": 20.0})
    judge = RatingJudge(str(path), scale=(0, 4))
    assert list(judge.digit_ids) == [0, 1, 2, 3, 4]
    assert judge.score(["q"], ["a"])[0]["score"] == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ConfigError, match="single digits"):
        RatingJudge(str(path), scale=(1, 10))


def test_too_long_prompt_gives_none_and_long_response_is_truncated(tiny_model):
    judge = RatingJudge(str(tiny_model), max_length=300, batch_size=4)
    long_prompt, long_answer = "Explain photosynthesis. " * 60, "The quick brown fox. " * 80
    ok, truncated, failed = judge.score(["Sort 3 1 2", "Sort 3 1 2", long_prompt],
                                        ["1 2 3", long_answer, "short"])
    assert ok["score"] is not None and not json.loads(ok["raw"])["truncated"]
    raw = json.loads(truncated["raw"])
    assert truncated["score"] is not None and raw["truncated"] and raw["prompt_tokens"] <= 300
    assert failed["score"] is None and failed["probs"] == []
    assert "context is 300" in json.loads(failed["raw"])["error"]


def test_batched_scores_equal_one_at_a_time(tiny_model):
    prompts = ["hi", "What is the capital of France?", "Sort the numbers 3 1 2 please"]
    answers = ["hello! How can I help you today?", "Paris", "1 2 3"]
    batched = RatingJudge(str(tiny_model), batch_size=3).score(prompts, answers)
    single = RatingJudge(str(tiny_model), batch_size=1).score(prompts, answers)
    for b, s in zip(batched, single):
        assert b["score"] == pytest.approx(s["score"], abs=1e-5)
        assert b["digit_mass"] == pytest.approx(s["digit_mass"], rel=1e-4)


def test_several_aspects_give_ratings_and_their_mean(tiny_model):
    judge = RatingJudge(str(tiny_model), rubric=["helpfulness", "honesty"])
    [v] = judge.score(["hi"], ["hello"])
    assert set(v["ratings"]) == {"helpfulness", "honesty"}
    assert v["score"] == pytest.approx(sum(v["ratings"].values()) / 2)
    assert set(json.loads(v["raw"])) == {"helpfulness", "honesty"}


@pytest.mark.slow
def test_smollm2_answers_with_digits(smollm2):
    """SmolLM2-135M puts most of its next-token mass on the digits; how well it orders
    right over wrong answers is printed, not asserted (about chance for a 135M model)."""
    judge = RatingJudge("smollm2", batch_size=8)
    prompts = [c[0] for c in CHECKS] * 2
    verdicts = judge.score(prompts, [c[1] for c in CHECKS] + [c[2] for c in CHECKS])
    assert all(v["score"] is not None and 1 <= v["score"] <= 5 for v in verdicts)
    assert min(v["digit_mass"] for v in verdicts) > 0.5
    n = len(CHECKS)
    right = sum(verdicts[i]["score"] > verdicts[i + n]["score"] for i in range(n))
    print(f"smollm2 judge ordered {right}/{n} right-over-wrong pairs correctly")
