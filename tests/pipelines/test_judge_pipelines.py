"""The AI-feedback pipelines end to end, fast: the deterministic fake judge (exact rows),
the fake teacher (every answer unparseable), and tiny in-process models."""

import json

import pytest

from alignment.data import read_card, read_rows, write_rows
from tests.helpers import ROOT


@pytest.fixture(autouse=True)
def _float32(monkeypatch):
    # exact-logit fixtures and greedy-equality checks compare to the last digit: run them in
    # float32 on every CPU (bf16 CPUs would otherwise pick bf16 and round the logits)
    monkeypatch.setenv("ALIGN_DTYPE", "float32")

ROWS = [
    {"id": "a1", "prompt": "What is 2+2?", "responses": ["4", "5", "Four."],
     "models": ["m1", "m2", "m3"], "scores": [None] * 3, "judge": "none",
     "judge_raw": [""] * 3},
    {"id": "b2", "prompt": "Name a primary colour.", "responses": ["Red.", "Green is a fruit."],
     "models": ["m1", "m2"], "scores": [None] * 2, "judge": "none", "judge_raw": [""] * 2},
]


@pytest.fixture
def ranked(tmp_path):
    return str(write_rows(ROWS, tmp_path / "in.jsonl"))


def _generate(*argv: str) -> int:
    from pipelines.cli import main

    return main(list(argv))


def _generate_in_child(*argv: str) -> None:
    """Run ``align generate`` in a fresh interpreter, as a user does.

    Needed for in-process models: distilabel forks its step processes, and a fork of a
    process that has already run torch ops (other tests here do) can deadlock in the
    inherited OpenMP thread pool."""
    import os
    import subprocess
    import sys

    root = ROOT
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("name", ["ultrafeedback", "helpsteer", "ranking", "pairwise",
                                  "reward-model", "combine"])
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        _generate(name, "--help")
    assert exit_.value.code == 0
    assert f"align generate {name}" in capsys.readouterr().out


def test_ultrafeedback_fake_judge_exact_rows(ranked, tmp_path):
    out = tmp_path / "uf.jsonl"
    assert _generate("ultrafeedback", ranked, "-o", str(out), "--dry-run") == 0
    rows = read_rows(out)
    assert [r["id"] for r in rows] == ["a1", "b2"]
    assert rows[0]["ratings"] == [
        {"instruction_following": 4.0, "truthfulness": 4.0, "honesty": 5.0, "helpfulness": 2.0},
        {"instruction_following": 5.0, "truthfulness": 3.0, "honesty": 1.0, "helpfulness": 5.0},
        {"instruction_following": 4.0, "truthfulness": 4.0, "honesty": 3.0, "helpfulness": 5.0}]
    assert rows[0]["scores"] == [3.75, 3.5, 4.0]  # the mean of the four aspects
    # one unparseable answer per response: no overall score, raw text kept
    assert rows[1]["ratings"] == [
        {"instruction_following": 4.0, "truthfulness": 4.0, "honesty": 2.0, "helpfulness": None},
        {"instruction_following": None, "truthfulness": 2.0, "honesty": 4.0, "helpfulness": 2.0}]
    assert rows[1]["scores"] == [None, None]
    raw = json.loads(rows[1]["judge_raw"][0])
    assert raw["helpfulness"] == "I think it is quite good overall."
    assert raw["honesty"].startswith("Rating: 2\nRationale: fake verdict")
    assert rows[0]["rationales"][0].startswith("instruction_following: fake verdict")
    card = read_card(out)
    assert card["counts"]["parse_failures_per_aspect"] == {
        "instruction_following": 1, "truthfulness": 0, "honesty": 0, "helpfulness": 1}
    assert card["counts"]["responses_without_score"] == 2
    assert "Rating: <one whole number from {low} to {high}>" in card["prompt_templates"]["rating"]


def test_helpsteer_fake_judge_overall_is_helpfulness(ranked, tmp_path):
    out = tmp_path / "hs.jsonl"
    assert _generate("helpsteer", ranked, "-o", str(out), "--dry-run") == 0
    rows = read_rows(out)
    assert [r["scores"] for r in rows] == [[3.0, 0.0, 4.0], [2.0, 1.0]]
    assert rows[1]["ratings"][1] == {"helpfulness": 1.0, "correctness": 2.0, "coherence": 3.0,
                                     "complexity": 2.0, "verbosity": 4.0}
    assert rows[0]["ratings"][0]["correctness"] is None  # failed, and not part of the score
    card = read_card(out)
    assert card["scale"] == [0, 4] and card["overall_score"]["weights"] == {"helpfulness": 1.0}


def test_helpsteer_weights_give_a_weighted_mean(ranked, tmp_path):
    out = tmp_path / "hs.jsonl"
    _generate("helpsteer", ranked, "-o", str(out), "--dry-run",
              "--weights", "helpfulness=3", "complexity=1")
    rows = read_rows(out)
    # (3 * helpfulness + complexity) / 4, from the ratings of the exact-rows test
    assert rows[0]["scores"] == [(3 * 3 + 3) / 4, (0 + 4) / 4, (3 * 4 + 2) / 4]


def test_ranking_fake_judge_maps_the_shuffle_back(ranked, tmp_path):
    out = tmp_path / "rk.jsonl"
    assert _generate("ranking", ranked, "-o", str(out), "--dry-run") == 0
    rows = read_rows(out)
    # row a1 was shown as [5, Four., 4] (shown_order [1, 2, 0]); the answer
    # "A > C > B" ranks "5" first, "4" second, "Four." third
    assert rows[0]["shown_order"] == [1, 2, 0]
    assert json.loads(rows[0]["judge_raw"][0])["answer"] == "Ranking: A > C > B"
    assert rows[0]["ranks"] == [2, 1, 3] and rows[0]["scores"] == [2.0, 3.0, 1.0]
    assert rows[1]["ranks"] == [1, 2]
    assert read_card(out)["counts"]["parse_failures"] == 0


def test_pairwise_fake_judge_both_orders_and_consistency(ranked, tmp_path, capsys):
    out = tmp_path / "pw.jsonl"
    assert _generate("pairwise", ranked, "-o", str(out), "--dry-run") == 0
    rows = read_rows(out)
    assert [(c["first"], c["second"], c["winner"]) for c in rows[0]["comparisons"]] == [
        (0, 1, 0), (1, 0, 1), (0, 2, 2), (2, 0, 2), (1, 2, 2), (2, 1, 1)]
    assert rows[0]["scores"] == [0.25, 0.5, 0.75] and rows[0]["ranks"] == [3, 2, 1]
    # b2: the swapped order did not parse; the one verdict decides the pair
    assert [c["winner"] for c in rows[1]["comparisons"]] == [1, None]
    assert rows[1]["scores"] == [0.0, 1.0]
    pc = read_card(out)["position_consistency"]
    assert pc["pairs_with_both_verdicts"] == 3 and pc["position_consistency_rate"] == 0.3333
    assert "position consistency 0.3333 over 3 pairs" in capsys.readouterr().out


def test_unparseable_teacher_answers_become_null_and_are_counted(ranked, tmp_path):
    """The generation pipelines' fake teacher answers everything in prose: no rating
    may come out of it."""
    from pipelines.fake import FakeLLM
    from pipelines.judging import read_input, run_step
    from pipelines.rating_steps import AspectRatingStep, aspect_counts
    from alignment.rubrics import ULTRAFEEDBACK as ASPECTS

    rows = [{k: r[k] for k in ("id", "prompt", "responses", "models")}
            for r in read_input(ranked)]
    out, _ = run_step("uf-fake", rows, lambda: AspectRatingStep(
        name="ratings", aspects={"honesty": ASPECTS["honesty"]}, llm=FakeLLM()))
    assert [r["scores"] for r in out] == [[None] * 3, [None] * 2]
    assert json.loads(out[0]["judge_raw"][0])["honesty"].startswith('Answer to "# Honesty')
    assert aspect_counts(out, ["honesty"])["parse_failures_per_aspect"] == {"honesty": 5}


def test_ultrafeedback_in_process_with_rationales(ranked, tmp_path, tiny_model):
    from pipelines.rating_steps import aspect_judge
    from alignment.rubrics import ULTRAFEEDBACK as ASPECTS

    out = tmp_path / "uf.jsonl"
    _generate_in_child("ultrafeedback", ranked, "-o", str(out), "--model", str(tiny_model),
                       "--aspects", "truthfulness", "helpfulness", "--rationales")
    rows = read_rows(out)
    aspects = {a: ASPECTS[a] for a in ("truthfulness", "helpfulness")}
    judge = aspect_judge(str(tiny_model), aspects, (1, 5), batch_size=1)
    direct = judge.score([r["prompt"] for r in ROWS for _ in r["responses"]],
                         [x for r in ROWS for x in r["responses"]])
    got = [rt for r in rows for rt in r["ratings"]]
    for g, d in zip(got, direct, strict=True):
        assert g == pytest.approx(d["ratings"])  # batched in the step, one by one here
    assert all(1 <= s <= 5 for r in rows for s in r["scores"])
    assert all(isinstance(t, str) for r in rows for t in r["rationales"])
    card = read_card(out)
    assert card["judge"]["backend"] == "in-process"
    assert card["counts"]["parse_failures_per_aspect"] == {"truthfulness": 0, "helpfulness": 0}


def test_ranking_in_process_methods(tiny_model):
    from pipelines.ranking import KWiseRankingStep

    for method in ("rating", "first-choice"):
        step = KWiseRankingStep(name=f"rank_{method}", judge_model=str(tiny_model),
                                method=method)
        step.load()
        rows = next(step.process([{k: r[k] for k in ("id", "prompt", "responses")}
                                  for r in ROWS]))
        for row in rows:
            assert sorted(row["ranks"]) == list(range(1, len(row["responses"]) + 1)) or \
                len(set(row["scores"])) < len(row["scores"])  # ties share a rank
            best = row["ranks"].index(1)
            assert row["scores"][best] == max(row["scores"])
        if method == "first-choice":
            assert all(sum(r["scores"]) == pytest.approx(1.0) for r in rows)


def test_pairwise_in_process_reads_token_probabilities(tiny_model):
    from pipelines.pairwise import PairwiseJudgeStep, consistency

    step = PairwiseJudgeStep(name="pw", judge_model=str(tiny_model))
    step.load()
    rows = next(step.process([{"prompt": r["prompt"], "responses": r["responses"]}
                              for r in ROWS]))
    assert [len(r["comparisons"]) for r in rows] == [6, 2]
    for n, c in enumerate(rows[0]["comparisons"]):
        # (i, j) then (j, i): the first-shown response wins with the probability of "A"
        raw = json.loads(c["raw"])
        assert c["p_first"] == pytest.approx(raw["a_first" if n % 2 == 0 else "a_second"]["p_A"],
                                             abs=1e-6)
        assert c["winner"] == (c["first"] if c["p_first"] > 0.5 else c["second"])
    scores = rows[1]["scores"]
    assert scores[0] + scores[1] == pytest.approx(1.0)
    assert consistency(rows)["pairs_with_both_verdicts"] == 4


def test_reward_model_scores_are_the_logit(ranked, tmp_path, tiny_reward_model):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "rm.jsonl"
    _generate_in_child("reward-model", ranked, "-o", str(out), "--model",
                       str(tiny_reward_model), "--batch-size", "2")
    rows = read_rows(out)
    tok = AutoTokenizer.from_pretrained(tiny_reward_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model).eval()
    for row in rows:
        for resp, score in zip(row["responses"], row["scores"], strict=True):
            text = tok.apply_chat_template([{"role": "user", "content": row["prompt"]},
                                            {"role": "assistant", "content": resp}],
                                           tokenize=False)
            ids = tok(text, add_special_tokens=False, return_tensors="pt")
            with torch.inference_mode():
                expected = float(model(**ids).logits[0, 0])
            assert score == pytest.approx(expected, abs=1e-4)
        assert sorted(r for r in row["ranks"]) == sorted(row["ranks"])
    assert read_card(out)["counts"]["responses"] == 5


def test_combine_mean_and_agreement(ranked, tmp_path, capsys):
    uf, rk = tmp_path / "uf.jsonl", tmp_path / "rk.jsonl"
    _generate("ultrafeedback", ranked, "-o", str(uf), "--dry-run")
    _generate("ranking", ranked, "-o", str(rk), "--dry-run")
    out = tmp_path / "both.jsonl"
    assert _generate("combine", str(uf), str(rk), "-o", str(out)) == 0
    rows = read_rows(out)
    # a1: UF [3.75, 3.5, 4.0], ranking scores [2, 3, 1]; b2: UF [None, None], [2, 1]
    assert rows[0]["scores"] == [2.875, 3.25, 2.5] and rows[1]["scores"] == [2.0, 1.0]
    card = read_card(out)
    # tau on a1 only (b2 has no UF scores): UF orders 2 > 0 > 1, the ranking 1 > 0 > 2,
    # exactly reversed: all three pairs discordant
    assert card["agreement"]["kendall_tau"] == -1.0
    assert card["agreement"]["responses_scored_by_all"] == 3
    assert "kendall_tau -1.0" in capsys.readouterr().out


def test_combine_refuses_mismatched_rows(tmp_path):
    from pipelines.combine import combine

    other = [dict(ROWS[0], responses=["4", "6", "Four."]), ROWS[1]]
    rows, info = combine([ROWS, other])
    assert [r["id"] for r in rows] == ["b2"]
    assert info["counts"]["rows_with_different_responses"] == 1
    reordered = [dict(ROWS[0], responses=["Four.", "4", "5"], scores=[3, 1, 2])]
    rows, info = combine([[dict(ROWS[0], scores=[1, 2, 3])], reordered])
    assert rows[0]["scores"] == [1.0, 2.0, 3.0]  # matched by text: 4 -> 1, 5 -> 2, Four. -> 3


def test_a_killed_judge_run_resumes_from_its_journal(ranked):
    """Judging finishes through the generation pipelines' journal: rows journalled by an
    interrupted attempt are not judged again, and every row comes back exactly once."""
    from pipelines import runner
    from pipelines.fake import FakeLLM
    from pipelines.judging import read_input, run_step
    from pipelines.rating_steps import AspectRatingStep
    from alignment.rubrics import ULTRAFEEDBACK as ASPECTS

    rows = [{k: r[k] for k in ("id", "prompt", "responses", "models")}
            for r in read_input(ranked)]

    def step():
        return AspectRatingStep(name="ratings", aspects={"honesty": ASPECTS["honesty"]},
                                llm=FakeLLM())
    first, _ = run_step("uf-resume", rows, step)
    [journal] = list((runner.cache_root() / "align-uf-resume").rglob(runner.JOURNAL_NAME))
    lines = journal.read_text().splitlines()
    assert len(lines) == len(rows)
    journal.write_text(lines[0] + "\n")  # as if killed after the first row
    again, _ = run_step("uf-resume", rows, step)
    assert again == first and [r["id"] for r in again] == [r["id"] for r in rows]
    # only the missing row was judged again
    assert len(journal.read_text().splitlines()) == len(rows)
