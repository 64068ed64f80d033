"""PairwiseJudge: both orders asked, position bias becomes a tie, content wins consistently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.judges import PairwiseJudge
from tests.helpers import digit_model


@pytest.fixture(autouse=True)
def _float32(monkeypatch):
    # exact-logit fixtures and greedy-equality checks compare to the last digit: run them in
    # float32 on every CPU (bf16 CPUs would otherwise pick bf16 and round the logits)
    monkeypatch.setenv("ALIGN_DTYPE", "float32")

QUESTION, GOOD, BAD = "What is the capital of France?", "Paris", "dog"


def test_position_biased_judge_gives_only_ties(tiny_model, tmp_path):
    # the rewired model says "A" whatever it reads: P(A) = 0.8 in both orders
    import math

    path = digit_model(tiny_model, tmp_path / "m", {"A": 20.0 + math.log(4.0), "B": 20.0})
    judge = PairwiseJudge(str(path), batch_size=2)
    verdicts = judge.compare([QUESTION, "hi", "Sort 3 1 2"], [GOOD, "hello", "1 2 3"],
                             [BAD, "go away", "3 2 1"])
    for v in verdicts:
        assert v["p_a_first"] == pytest.approx(0.8, abs=1e-4)
        assert v["p_a_second"] == pytest.approx(0.2, abs=1e-4)
        assert v["p_a"] == pytest.approx(0.5, abs=1e-4)
        assert v["winner"] == "tie" and v["consistent"] is False
        assert v["label_mass"] > 0.99
        raw = json.loads(v["raw"])
        assert raw["a_first"]["top_tokens"][0][0] == "A" and not raw["a_first"]["truncated"]


# Ends the rendered prompt on the last token of response B: no generation prompt, no prefix.
BARE_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
SLOTS = "{instruction}\nA:\n{response_a}\nB:\n{response_b}"


def _content_judge(tiny_model: Path, out: Path) -> Path:
    """The tiny model rewired to judge by content: it reads the last token of the prompt,
    which with SLOTS is response B's last word, and answers "B" after GOOD, "A" after BAD.

    As in tests/alignment/test_judges.py the layers add nothing (zeroed output projections), so the
    final hidden state is the last token's embedding: ones everywhere, +v for GOOD and -v
    for BAD (v = +1 on the first half, -1 on the second). The lm_head rows of "A" and "B"
    are -v and +v scaled, giving logits +-10 and 0 for every other token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = BARE_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(tiny_model, tie_word_embeddings=False)
    hidden = model.config.hidden_size
    v = torch.cat([torch.ones(hidden // 2), -torch.ones(hidden - hidden // 2)])

    def last_token(text: str) -> int:
        return tok(text, add_special_tokens=False).input_ids[-1]
    good, bad = last_token(f"B:\n{GOOD}"), last_token(f"B:\n{BAD}")
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(1.0)
        model.model.embed_tokens.weight[good] = v
        model.model.embed_tokens.weight[bad] = -v
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        (a,) = tok("A", add_special_tokens=False).input_ids
        (b,) = tok("B", add_special_tokens=False).input_ids
        model.lm_head.weight[a] = -10.0 * v / hidden
        model.lm_head.weight[b] = 10.0 * v / hidden
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_content_judge_gives_a_consistent_winner(tiny_model, tmp_path):
    judge = PairwiseJudge(str(_content_judge(tiny_model, tmp_path / "m")), batch_size=4,
                          template=SLOTS, prefix="")
    good_first, good_second = judge.compare([QUESTION, QUESTION], [GOOD, BAD], [BAD, GOOD])
    assert good_first["winner"] == "a" and good_first["consistent"]
    assert good_first["p_a_first"] > 0.99 and good_first["p_a_second"] > 0.99
    assert good_second["winner"] == "b" and good_second["consistent"]
    assert good_second["p_a"] < 0.01


def test_batched_equals_one_at_a_time(tiny_model):
    prompts = ["hi", "What is the capital of France?", "Sort the numbers 3 1 2 please"]
    a = ["hello! How can I help you today?", "Paris", "1 2 3"]
    b = ["no", "Paris is the capital of France.", "3 2 1"]
    batched = PairwiseJudge(str(tiny_model), batch_size=3).compare(prompts, a, b)
    single = PairwiseJudge(str(tiny_model), batch_size=1).compare(prompts, a, b)
    for x, y in zip(batched, single):
        assert x["p_a_first"] == pytest.approx(y["p_a_first"], abs=1e-5)
        assert x["p_a_second"] == pytest.approx(y["p_a_second"], abs=1e-5)
        assert x["winner"] == y["winner"]


def test_long_responses_are_truncated_and_too_long_prompts_have_no_verdict(tiny_model):
    judge = PairwiseJudge(str(tiny_model), max_length=300)
    long = "The quick brown fox. " * 80
    truncated, failed = judge.compare(["Sort 3 1 2", "Explain photosynthesis. " * 60],
                                      [long, "a"], ["1 2 3", "b"])
    raw = json.loads(truncated["raw"])
    assert truncated["winner"] is not None and raw["a_first"]["truncated"]
    assert raw["a_first"]["prompt_tokens"] <= 300 and raw["a_second"]["prompt_tokens"] <= 300
    assert failed["winner"] is None and failed["p_a"] is None and not failed["consistent"]
    assert "context is 300" in json.loads(failed["raw"])["error"]


def test_mismatched_lengths_are_refused(tiny_model):
    with pytest.raises(ValueError, match="one of each"):
        PairwiseJudge(str(tiny_model)).compare(["q"], ["a", "b"], ["c"])


@pytest.mark.slow
def test_smollm2_pairwise_on_right_vs_wrong(smollm2):
    """SmolLM2-135M answers with a label; how often its two orders agree and how often it
    then picks the right answer is printed, not asserted (a 135M judge is weak)."""
    from tests.helpers import CHECKS

    judge = PairwiseJudge("smollm2", batch_size=8)
    verdicts = judge.compare([c[0] for c in CHECKS], [c[1] for c in CHECKS],
                             [c[2] for c in CHECKS])
    assert all(v["winner"] in ("a", "b", "tie") for v in verdicts)
    assert min(v["label_mass"] for v in verdicts) > 0.05
    consistent = sum(v["consistent"] for v in verdicts)
    right = sum(v["winner"] == "a" for v in verdicts)
    print(f"smollm2 pairwise judge: {consistent}/{len(CHECKS)} position-consistent, "
          f"{right} right, mean label mass "
          f"{sum(v['label_mass'] for v in verdicts) / len(verdicts):.2f}")
