"""Follow rates with paired bootstrap intervals, factual checks, repairs and loop pairs."""

from __future__ import annotations

import json

import pytest

from alignment import following, verifiers
from alignment.engine import Generation
from alignment.recipes.loop import make_pairs


def gen(text: str, reason: str = "stop") -> Generation:
    return Generation(text, reason, len(text.split()))


ROWS = [{"prompt": f"p{i}", "verifiers": [{"name": "lowercase"}]} for i in range(6)] + [
    {"prompt": "q", "verifiers": [{"name": "max_words", "params": {"limit": 3}},
                                  {"name": "lowercase"}]}]


def test_follow_rates_per_prompt_and_per_verifier():
    base = [gen("Hello there")] * 6 + [gen("one two three four")]
    trained = [gen("hello there")] * 4 + [gen("Hi")] * 2 + [gen("one two")]
    fig = following.follow_figures(ROWS, trained, base)
    f = fig["follow_rate"]
    # the base's last answer is lowercase but one word too long: it follows no prompt
    assert f["n"] == 7 and f["base"] == 0 and f["policy"] == pytest.approx(5 / 7)
    assert f["difference"] == pytest.approx(5 / 7)
    lo, hi = f["ci95"]
    assert 0 < lo < f["difference"] < hi <= 1
    lower = fig["by_verifier"]["lowercase"]
    assert lower["n"] == 7 and lower["policy"] == pytest.approx(5 / 7)
    assert lower["base"] == pytest.approx(1 / 7)
    words = fig["by_verifier"]["max_words"]
    assert words["n"] == 1 and words["base"] == 0 and words["policy"] == 1
    # partial credit: the base's 4-word answer got 3/4 of max_words and passed lowercase
    assert fig["score"]["base"] == pytest.approx(((0.75 + 1) / 2) / 7)


def test_truncated_answers_are_counted():
    base = [gen("hello", "length")] + [gen("hello")] * 6
    fig = following.follow_figures(ROWS, base, base)
    assert fig["truncated"] == {"policy": 1, "base": 1}
    assert fig["follow_rate"]["difference"] == 0 and fig["follow_rate"]["ci95"] == [0.0, 0.0]


def test_bootstrap_interval_is_seeded_and_sane():
    a, b = [1, 1, 0, 1, 0, 1, 1, 1, 0, 1] * 4, [0, 1, 0, 0, 0, 1, 0, 1, 0, 0] * 4
    one = following.paired_difference(a, b, seed=3)
    assert one == following.paired_difference(a, b, seed=3)
    assert one["ci95"][0] > 0  # 0.4 points ahead on 40 prompts: clearly above zero
    noisy = following.paired_difference([1, 0, 1, 0], [0, 1, 0, 1], seed=0)
    assert noisy["ci95"][0] < 0 < noisy["ci95"][1]


def test_factual_answers_match_whole_words():
    assert following.answer_correct("The capital is Paris.", ["Paris"])
    assert following.answer_correct("it is paris", ["Paris"])
    assert not following.answer_correct("Comparison", ["Paris"])
    assert not following.answer_correct("It freezes at 100 degrees", ["0", "zero"])
    rows = following.read_factual(following.FACTUAL)
    assert len(rows) == 30 and all(r["answers"] for r in rows)
    fig = following.factual_figures(rows[:2], [gen("Paris"), gen("Kyoto")], [gen("Paris"), gen("Tokyo")])
    assert fig["accuracy"]["policy"] == 0.5 and fig["accuracy"]["base"] == 1.0


def test_reading_prompts_names_file_and_row(tmp_path):
    from alignment.errors import DataError

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "a", "verifiers": [{"name": "lowercase"}]}) + "\n"
                    + json.dumps({"prompt": "b", "verifiers": []}) + "\n")
    with pytest.raises(DataError) as e:
        following.read_checked_prompts(path)
    assert "p.jsonl" in str(e.value) and "row 2" in str(e.value) and "verifiers" in str(e.value)


@pytest.mark.parametrize("spec, text", [
    ({"name": "lowercase"}, "Hello World."),
    ({"name": "uppercase"}, "Hello World."),
    ({"name": "quoted"}, "A plain answer."),
    ({"name": "starts_with", "params": {"phrase": "In short"}}, "Cats purr when happy."),
    ({"name": "ends_with", "params": {"phrase": "Hope this helps!"}}, "Cats purr."),
    ({"name": "forbidden_chars", "params": {"chars": ","}}, "Cats, dogs, birds."),
    ({"name": "max_words", "params": {"limit": 6}}, "Cats purr a lot. They do it when happy."),
    ({"name": "max_sentences", "params": {"limit": 1}}, "One. Two. Three."),
    ({"name": "bullet_count", "params": {"count": 2}}, "First point. Second point. Third."),
    ({"name": "json_keys", "params": {"keys": ["title", "summary"]}}, "A title. The rest."),
])
def test_repairs_make_the_check_pass(spec, text):
    assert verifiers.run(spec, text) < 1
    fixed = verifiers.repair([spec], text)
    assert fixed is not None and verifiers.run(spec, fixed) == 1.0


def test_checks_without_a_repair_give_none():
    spec = {"name": "keyword_count", "params": {"keyword": "blue", "min": 2}}
    assert verifiers.repair([spec], "The sky.") is None
    assert verifiers.repair([{"name": "final_answer", "params": {"answer": 4}}], "5") is None
    # two checks: both must end up passing together
    both = [{"name": "lowercase"}, {"name": "ends_with", "params": {"phrase": "Bye!"}}]
    fixed = verifiers.repair(both, "Hello.")
    assert fixed is not None and verifiers.score(both, fixed)["passed"]


def scored(responses, scores, passed, truncated=None, specs=None):
    return {"id": "r", "prompt": "Say hi. Write in lowercase.", "responses": responses,
            "scores": scores, "passed": passed,
            "truncated": truncated or [False] * len(responses),
            "verifiers": specs or [{"name": "lowercase"}]}


def test_pairs_best_against_worst_with_margin():
    rows = [scored(["hi there", "Hi There", "HI"], [1.0, 0.0, 0.0], [True, False, False])]
    pairs, counts = make_pairs(rows, margin=0.25)
    assert pairs[0]["chosen"] == "hi there" and pairs[0]["rejected"] in ("Hi There", "HI")
    assert not pairs[0]["repaired"] and counts["pairs"] == 1
    same = [scored(["hi", "yo"], [1.0, 1.0], [True, True])]
    assert make_pairs(same)[0] == [] and make_pairs(same)[1]["no_gap"] == 1


def test_repair_gives_a_chosen_when_nothing_passes():
    rows = [scored(["Hi There", "HELLO"], [0.0, 0.0], [False, False])]
    assert make_pairs(rows, repair=False)[0] == []
    pairs, counts = make_pairs(rows, repair=True)
    assert pairs[0]["repaired"] and pairs[0]["chosen"] == "hi there" and counts["repaired"] == 1
    assert verifiers.run({"name": "lowercase"}, pairs[0]["chosen"]) == 1.0


def test_truncated_answers_are_not_paired_unless_asked():
    rows = [scored(["hi there", "Hi There"], [1.0, 0.0], [True, False], truncated=[True, False])]
    pairs, counts = make_pairs(rows, repair=False)
    assert pairs == [] and counts["truncated_skipped"] == 1
    pairs, _ = make_pairs(rows, repair=False, keep_truncated=True)
    assert pairs[0]["chosen"] == "hi there"


def test_length_controlled_win_rate_removes_a_length_preference():
    from alignment.winrate import length_controlled

    # the trained answer wins exactly when it is the longer one: at equal length, a coin flip
    trained = ["a b c d e f", "a", "a b c d e f g", "a b", "a b c d e", "a"] * 3
    base = ["a b", "a b c d e", "a", "a b c d e f", "a", "a b c d"] * 3
    winners = ["a" if len(t) > len(b) else "b" for t, b in zip(trained, base)]
    lc = length_controlled(winners, trained, base)
    assert abs(lc["win_rate_lc"] - 0.5) < 0.15 and lc["length_slope"] > 0
    assert lc["mean_words_trained"] == pytest.approx(sum(len(t.split()) for t in trained) / 18)
    # a policy that wins whatever the lengths keeps a high controlled rate
    mixed = ["a", "b", "a", "a", "a", "a"] * 3
    assert length_controlled(mixed, trained, base)["win_rate_lc"] > 0.6
    assert length_controlled(["a"], ["x"], ["y"])["win_rate_lc"] is None


def test_cut_off_answers_are_cut_back_to_whole_sentences():
    from alignment.recipes.loop import _trimmed

    assert verifiers.whole_sentences('One. Two is "here." Three and') == 'One. Two is "here."'
    assert verifiers.whole_sentences("- a.\n- b.\n- c and") == "- a.\n- b."  # layout kept
    assert verifiers.whole_sentences("no end in sight") is None
    row = {"responses": ["Done. And the", "cut off", "Whole."], "truncated": [True, True, False]}
    trimmed = _trimmed(row)
    assert trimmed["responses"] == ["Done.", "cut off", "Whole."]
    assert trimmed["truncated"] == [False, True, False] and trimmed["trimmed"] == [True, False, False]
