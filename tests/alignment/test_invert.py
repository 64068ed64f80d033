"""`align invert`: the soft prompt raises the target's likelihood, the GCG search never
loses its best, a target the model can write greedily is found, the JSON holds its
figures, and bad targets files are refused with exit 2."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from alignment.cli import main as align
from alignment.invert import (TARGETS, Scorer, allowed_tokens, chat_frame, gcg, greedy_check,
                              read_targets, soft_prompt, target_loglik)


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    model.requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(path)


def _roundtrips(tokenizer):
    return lambda ids: tokenizer(tokenizer.decode(list(ids)),
                                 add_special_tokens=False).input_ids == list(ids)


def test_soft_prompt_raises_the_targets_likelihood(varied_model):
    import torch

    model, tok = _load(varied_model)
    target = tok("Paris is the capital of France.", add_special_tokens=False).input_ids
    scorer = Scorer(model, chat_frame(tok), target)
    init = torch.tensor([5, 17, 40, 99])
    before = scorer.loss_of_ids(init[None])[0].item()
    soft, history = soft_prompt(scorer, init, steps=30, lr=0.1)
    after = scorer.loss(soft[None])[0].item()
    assert history[0] == pytest.approx(before, abs=1e-5)
    assert after < before - 0.5, (before, after)
    assert after == pytest.approx(min(history), abs=1e-5)
    assert not any(p.grad is not None for p in model.parameters())  # weights stay frozen


def test_scorer_agrees_with_a_plain_forward_pass(varied_model):
    import torch

    model, tok = _load(varied_model)
    frame = chat_frame(tok)
    prompt = tok("hello sea", add_special_tokens=False).input_ids
    target = tok(" Paris", add_special_tokens=False).input_ids
    loss = Scorer(model, frame, target).loss_of_ids(torch.tensor([prompt]))[0].item()
    ll = target_loglik(model, frame.before + prompt + frame.after, target)
    assert -loss * len(target) == pytest.approx(ll, abs=1e-4)
    # the frame is the chat template cut around the user's text
    from alignment.engine import encode_prompt
    assert frame.before + prompt + frame.after == encode_prompt(tok, "hello sea")


def test_gcg_never_makes_the_best_loss_worse(varied_model):
    import torch

    model, tok = _load(varied_model)
    target = tok("The quick brown fox jumps over the lazy dog.",
                 add_special_tokens=False).input_ids
    scorer = Scorer(model, chat_frame(tok), target)
    allowed = allowed_tokens(tok, scorer.embedding.shape[0])
    start = torch.tensor([12, 34, 56, 78, 90])
    ids, history, _ = gcg(scorer, start, steps=8, topk=32, batch=32, allowed=allowed,
                          rng=random.Random(0), roundtrips=_roundtrips(tok))
    assert len(history) == 9
    assert all(b <= a for a, b in zip(history, history[1:]))
    assert history[-1] < history[0]  # it found something better than the start
    assert scorer.loss_of_ids(ids[None])[0].item() == pytest.approx(history[-1], abs=1e-5)
    assert all(allowed[ids])


def _greedy_target(model, tok, seed: int) -> str:
    """The model's own greedy 3-token answer to a random 3-token prompt, kept only if its
    text tokenises back to the same tokens (so the target is reachable)."""
    allowed = allowed_tokens(tok, model.get_input_embeddings().weight.shape[0])
    pool = allowed.nonzero().squeeze(1).tolist()
    rng = random.Random(seed)
    for _ in range(200):
        prompt = tok.decode(rng.sample(pool, 3))
        probe = greedy_check(model, tok, prompt, [0, 0, 0])
        text = probe["greedy_output"]
        ids = tok(text, add_special_tokens=False).input_ids
        if len(ids) == 3 and greedy_check(model, tok, prompt, ids)["reproduced"]:
            return text
    raise AssertionError("no reachable 3-token greedy answer found")


def test_a_target_the_model_writes_greedily_is_found_and_the_json_has_its_fields(
        varied_model, tmp_path, capsys):
    model, tok = _load(varied_model)
    targets = [_greedy_target(model, tok, s) for s in (1, 2)]
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"id": f"t{i}", "target": t}) + "\n"
                            for i, t in enumerate(targets)))
    out = tmp_path / "inv"
    assert align(["invert", "--targets", str(data), "--model", str(varied_model),
                  "--steps", "40", "--prompt-tokens", "3", "--topk", "32", "--batch", "48",
                  "--soft-steps", "20", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "invert.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["invert.json", "invert.png"]
    assert (out / "invert.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["settings"]["steps"] == 40 and result["dtype"] in ("float32", "bfloat16")
    rows = result["targets"]
    assert [r["id"] for r in rows] == ["t0", "t1"] and [r["target"] for r in rows] == targets
    for r in rows:
        for key in ("empty_prompt", "initial_prompt", "found_prompt"):
            assert {"loglik", "loglik_per_token"} <= set(r[key])
        f = r["found_prompt"]
        assert {"reproduced", "matching_prefix_tokens", "greedy_output"} <= set(f)
        assert r["loglik_gain"] == pytest.approx(f["loglik"] - r["empty_prompt"]["loglik"])
        assert f["loglik_per_token"] * r["target_tokens"] == pytest.approx(f["loglik"])
        # the flag agrees with a greedy decode of our own, from the prompt text
        own = greedy_check(model, tok, r["prompt"],
                           tok(r["target"], add_special_tokens=False).input_ids)
        assert own["reproduced"] == f["reproduced"]
        assert own["matching_prefix_tokens"] == f["matching_prefix_tokens"]
        assert f["loglik"] >= r["initial_prompt"]["loglik"] - 1e-3 or \
            not r["prompt_text_retokenizes"]
        if not r["empty_prompt"]["reproduced"]:
            assert r["loglik_gain"] > 0
    # a prompt of the same length is known to produce each target, so the search finds one
    assert all(r["found_prompt"]["reproduced"] for r in rows), [
        (r["target"], r["prompt"], r["found_prompt"]) for r in rows]
    s = result["summary"]
    assert s["n"] == 2 and s["reproduced"] == 2 and s["reproduction_rate"] == 1.0
    assert 0 < s["ci95"][0] < 1.0 <= s["ci95"][1] + 1e-9
    assert s["mean_loglik_gain"] == pytest.approx(sum(r["loglik_gain"] for r in rows) / 2)
    assert "reproduced exactly: 2/2" in printed


def test_shipped_targets_are_twenty_distinct_short_answers():
    rows = read_targets(TARGETS)
    assert len(rows) == 20
    assert len({r["target"] for r in rows}) == 20 and len({r["id"] for r in rows}) == 20
    assert all(len(r["target"]) <= 80 for r in rows)
    assert len(read_targets(TARGETS, limit=3)) == 3


@pytest.mark.parametrize("row, field, words", [
    ({"answer": "x"}, "target", "is missing"),
    ({"target": 3}, "target", "expected text"),
    ({"target": "   "}, "target", "is empty"),
    ({"target": "x" * 600}, "target", "characters"),
])
def test_bad_targets_file_exits_2_naming_file_row_and_field(tmp_path, capsys, row, field,
                                                            words):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"target": "fine"}) + "\n" + json.dumps(row) + "\n")
    # the model does not exist: the rows are checked before any model loads
    assert align(["invert", "--targets", str(data), "--model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert str(data) in err and "row 2" in err and f"`{field}`" in err and words in err


def test_bad_options_exit_2(tmp_path, capsys):
    assert align(["invert", "--prompt-tokens", "0", "--model", str(tmp_path)]) == 2
    assert "--prompt-tokens" in capsys.readouterr().err
