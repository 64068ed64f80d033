"""alignment.engine: the same tokens as transformers' generate, and finished rows leave the batch."""

from __future__ import annotations

import pytest
import torch

from alignment.engine import decode
from tests.helpers import PROMPTS


@pytest.fixture(scope="module")
def loaded(varied_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(varied_model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(varied_model).eval()
    ids = [tok(tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                       add_generation_prompt=True), add_special_tokens=False).input_ids
           for p in PROMPTS]
    return tok, model, tok.pad({"input_ids": ids}, return_tensors="pt")


def _generate(model, tok, batch, eos: int, **kwargs) -> list[list[int]]:
    with torch.inference_mode():
        out = model.generate(**batch, pad_token_id=tok.pad_token_id, eos_token_id=eos, **kwargs)
    rows = []
    for seq in out[:, batch["input_ids"].shape[1]:].tolist():
        rows.append(seq[:seq.index(eos) + 1] if eos in seq else seq)
    return rows


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_matches_generate(loaded, penalty):
    tok, model, batch = loaded
    eos = tok.eos_token_id
    expected = _generate(model, tok, batch, eos, do_sample=False, max_new_tokens=10,
                         repetition_penalty=penalty)
    got = decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=10,
                 eos_ids=[eos], repetition_penalty=penalty)
    assert got == expected
    assert len({tuple(r) for r in got}) > 1


def test_finished_rows_leave_the_batch(loaded):
    tok, model, batch = loaded
    free = decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=8,
                  eos_ids=[tok.eos_token_id])
    # make the first row's third token an end token: that row stops there, the rest go on
    stop = free[0][2]
    assert all(stop not in r[:8] for r in free[1:]), "pick prompts whose answers differ"
    sizes = []
    hook = model.register_forward_pre_hook(
        lambda m, args, kwargs: sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        got = decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=8,
                     eos_ids=[tok.eos_token_id, stop])
    finally:
        hook.remove()
    assert got[0] == free[0][:3] and got[1:] == free[1:]
    rows = len(PROMPTS)
    assert sizes == [rows] * 3 + [rows - 1] * 5  # 8 tokens: the prefill and 7 more steps


def test_sampling_is_seeded_and_expands_return_sequences(loaded):
    tok, model, batch = loaded
    kwargs = dict(max_new_tokens=6, eos_ids=[tok.eos_token_id], do_sample=True, temperature=3.0,
                  top_p=0.99, num_return_sequences=3)
    torch.manual_seed(1)
    first = decode(model, batch["input_ids"], batch["attention_mask"], **kwargs)
    torch.manual_seed(1)
    again = decode(model, batch["input_ids"], batch["attention_mask"], **kwargs)
    assert first == again and len(first) == 3 * len(PROMPTS)
    assert len({tuple(r) for r in first[:3]}) > 1  # three different samples of prompt 0
