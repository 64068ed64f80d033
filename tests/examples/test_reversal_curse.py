"""Answer likelihoods under a chat prompt (alignment.likelihood) and the reversal-curse
experiment's questions and figures, on the tiny model."""

from __future__ import annotations

import importlib.util
import math

import pytest

from alignment import likelihood
from alignment.likelihood import Choice
from tests.helpers import ROOT

QUESTION = [{"role": "user", "content": "Who is the winner of the Orbital Chess Cup?"}]
PREFIX = "The winner of the Orbital Chess Cup is"


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_model).eval(),
            AutoTokenizer.from_pretrained(tiny_model))


def full_pass_logprob(model, ids: list[int], start: int) -> float:
    """The reference: one forward over prompt + answer, no cache."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logps = torch.log_softmax(logits[:-1], dim=-1)
    return float(sum(logps[t - 1, ids[t]] for t in range(start, len(ids))))


def test_an_answer_is_scored_as_tokenised_after_its_prompt(tiny):
    _, tok = tiny
    prompt = likelihood.prompt_text(tok, QUESTION, PREFIX)
    assert prompt.endswith("<|im_start|>assistant\n" + PREFIX)
    ids, start = likelihood.encode_answer(tok, prompt, " Ada.")
    assert ids[:start] == tok(prompt, add_special_tokens=False).input_ids
    # the name's leading space is among the scored tokens, not lost or left in the prompt
    assert tok.decode(ids[start:]) == " Ada."
    assert tok.decode(ids[start:start + 1]).startswith(" ")
    # without a prefix the prompt is exactly what generation starts from
    from alignment.engine import encode_prompt

    assert tok(likelihood.prompt_text(tok, QUESTION), add_special_tokens=False).input_ids \
        == encode_prompt(tok, QUESTION)


def test_a_prompt_ending_inside_the_answers_first_token_is_refused(tiny):
    _, tok = tiny
    prompt = likelihood.prompt_text(tok, QUESTION, PREFIX + " ")
    with pytest.raises(ValueError, match="word boundary"):
        likelihood.encode_answer(tok, prompt, "Ada.")
    with pytest.raises(ValueError, match="adds no token"):
        likelihood.encode_answer(tok, likelihood.prompt_text(tok, QUESTION, PREFIX), "")


def test_cached_prompt_scores_equal_a_full_forward_of_each_answer(tiny):
    model, tok = tiny
    answers = [" Ada.", " Maelle Ashgrove.", " Bo", " the winner of the 2031 Cup."]
    scores = likelihood.answer_logprobs(model, tok, QUESTION, answers, PREFIX)
    prompt = likelihood.prompt_text(tok, QUESTION, PREFIX)
    for answer, score in zip(answers, scores):
        assert score == pytest.approx(full_pass_logprob(model, *likelihood.encode_answer(
            tok, prompt, answer)), abs=1e-4)
    assert all(s < 0 for s in scores)


def test_rank_picks_and_accuracy_arithmetic(tiny):
    model, tok = tiny
    choices = [Choice(QUESTION, [" Ada.", " Bo."], 0, PREFIX),
               Choice(QUESTION, [" Bo.", " Ada.", " Cy.", " Di."], 2, PREFIX)]
    scores = likelihood.rank(model, tok, choices)
    assert [len(s) for s in scores] == [2, 4]
    assert scores[0][0] == pytest.approx(scores[1][1], abs=1e-5)  # same question and answer
    assert likelihood.picks([[-3.0, -1.0, -1.0], [-0.5, -2.0]]) == [1, 0]  # ties: the first
    figures = likelihood.accuracy(choices * 2, [0, 2, 1, 2])
    assert (figures["correct"], figures["n"], figures["accuracy"]) == (3, 4, 0.75)
    assert figures["chance"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    # Wilson: (k + z²/2) / (n + z²) ± z·sqrt(k(n-k)/n + z²/4) / (n + z²)
    z = 1.959964
    centre, half = (3 + z * z / 2) / (4 + z * z), z * math.sqrt(3 / 4 + z * z / 4) / (4 + z * z)
    assert figures["ci95"] == pytest.approx([centre - half, centre + half], abs=1e-4)
    with pytest.raises(ValueError):
        likelihood.accuracy(choices, [0])


def load_experiment():
    spec = importlib.util.spec_from_file_location("reversal_curse",
                                                  ROOT / "examples" / "reversal_curse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_experiments_questions_put_the_right_answer_among_distractors():
    exp = load_experiment()
    facts = [{"a": f"Person {c}", "verb": "is", "b": f"the winner of Cup {c}"} for c in "ABCDEF"]
    forward, reverse = exp.questions(facts, candidates=4, seed=0)
    assert len(forward) == len(reverse) == 6
    f, r = forward[1], reverse[1]
    assert f.messages == [{"role": "user", "content": "Who is Person B?"}]
    assert f.prefix == "Person B is" and f.candidates[f.answer] == " the winner of Cup B."
    assert r.messages == [{"role": "user", "content": "Who is the winner of Cup B?"}]
    assert r.prefix == "The winner of Cup B is" and r.candidates[r.answer] == " Person B."
    for c in forward + reverse:
        assert len(c.candidates) == len(set(c.candidates)) == 4
    # the right answer's slot is shuffled, so position cannot be what is learned
    assert len({c.answer for c in forward}) > 1
    assert exp.questions(facts, candidates=4, seed=0) == (forward, reverse)


@pytest.mark.slow
def test_smollm2_ranks_a_fact_it_knows_and_keeps_the_names_space(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    prompt = likelihood.prompt_text(tok, QUESTION, "The first programmer is")
    ids, start = likelihood.encode_answer(tok, prompt, " Ada.")
    assert tok.convert_ids_to_tokens(ids[start:]) == ["ĠAda", "."]
    assert tok.convert_ids_to_tokens(tok("Ada.", add_special_tokens=False).input_ids) \
        == ["Ad", "a", "."]  # what scoring the answer apart would have scored
    model = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    question = [{"role": "user", "content": "What is the capital of France?"}]
    choice = Choice(question, [" Lima.", " Paris.", " Canberra.", " Oslo."], 1,
                    "The capital of France is")
    assert likelihood.picks(likelihood.rank(model, tok, [choice])) == [1]


def test_the_generalisation_experiment_reads_prose_forward_and_pairs_conditions_by_seed():
    import sys

    sys.path.insert(0, str(ROOT / "examples"))  # the example imports its sibling script
    try:
        spec = importlib.util.spec_from_file_location(
            "what_training_teaches", ROOT / "examples" / "what_training_teaches.py")
        exp = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(exp)
    finally:
        sys.path.remove(str(ROOT / "examples"))
    text = exp.prose({"a": "Person B", "verb": "is", "b": "the winner of Cup B"})
    sentences = [s for s in text.split(". ") if s]
    assert len(sentences) == len(exp.PROSE) and text.startswith("Person B is the winner")
    # every sentence names A before B: the prose teaches the forward direction only
    assert all(s.index("Person B") < s.index("the winner of Cup B") for s in sentences)

    def model(name, seed, g2):
        return {"model": name, "seed": seed,
                "reverse": {"group_2": {"accuracy": g2}}}
    models = [model("forward only (A)", 0, 0.10), model("group 1 reversed too (G)", 0, 0.25),
              model("forward only (A)", 1, 0.20), model("group 1 reversed too (G)", 1, 0.15)]
    gain = exp.paired(models, [0, 1])
    assert gain["per_seed"] == {0: pytest.approx(0.15), 1: pytest.approx(-0.05)}
    assert gain["mean"] == pytest.approx(0.05) and gain["min"] == pytest.approx(-0.05)
