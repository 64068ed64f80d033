"""One generation engine for every in-process model: the pipeline teacher, `align eval`,
`align loop` and the local OpenAI-compatible server all decode through it.

Why not ``model.generate``: it keeps a finished sequence in the batch, padded, until the
longest one stops, so a batch whose answers end at 20, 30 and 64 tokens pays for 64 steps
of all of them. On a CPU, where a step's cost grows with the rows in it, that waste is a
large part of a pipeline's time. transformers' continuous-batching API
(``generate_batch``) removes finished rows too, but its paged-attention bookkeeping made it
slower than plain ``generate`` on CPU in our measurements. :func:`decode` uses the model's
own forward, its ``DynamicCache`` (``batch_select_indices`` compacts it) and transformers'
public logits processors, so greedy decoding picks the same tokens as ``generate``
(``tests/alignment/test_engine_decoding.py`` checks this).

Every answer says how it ended (:class:`Generation.finish_reason`): ``"stop"`` when the
model wrote an end token, ``"length"`` when the token limit cut it off, the same words an
OpenAI-compatible endpoint uses, so truncated answers can be flagged and kept out of
preference pairs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generation:
    """One answer: its text, how it ended (``stop`` or ``length``) and its token count."""

    text: str
    finish_reason: str
    tokens: int

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def pick_dtype() -> tuple[str, str]:
    """(dtype name, why) for inference on this machine: bf16 where the CPU multiplies it
    natively or a GPU is present, float32 elsewhere (emulated bf16 is slower than fp32).
    ``ALIGN_DTYPE=float32|bfloat16`` overrides the choice (exact comparisons, debugging)."""
    import os

    from alignment.errors import ConfigError
    from alignment.hardware import cpu_has_fast_bf16, has_accelerator

    forced = os.environ.get("ALIGN_DTYPE", "").strip().lower()
    if forced in ("float32", "bfloat16"):
        return forced, "ALIGN_DTYPE asks for it"
    if forced:
        raise ConfigError(f"ALIGN_DTYPE={forced!r}: use float32 or bfloat16 (or unset it)")
    if has_accelerator():
        return "bfloat16", "a GPU is present"
    if cpu_has_fast_bf16():
        return "bfloat16", "this CPU has native bf16 (avx512_bf16/amx)"
    return "float32", "this CPU has no native bf16, so float32 is faster"


def load_for_inference(spec: str):
    """(model in eval mode, tokenizer, dtype name, why) for a model name align knows
    (``smollm2``), a local folder or a hub id, in :func:`pick_dtype`'s dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    from alignment.errors import ConfigError
    from alignment.models import ModelNotAvailable, resolve_model
    from alignment.models import load_tokenizer

    try:
        path = resolve_model(spec)
    except ModelNotAvailable as e:
        raise ConfigError(str(e)) from None
    dtype, why = pick_dtype()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    return model, load_tokenizer(path), dtype, why


def logits_processors(do_sample: bool, temperature: float = 1.0, top_p: float = 1.0,
                      top_k: int = 0, repetition_penalty: float = 1.0):
    """transformers' processors in generate's order: penalties, then the sampling warpers."""
    from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                              TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    procs = LogitsProcessorList()
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if do_sample:
        if temperature != 1.0:
            procs.append(TemperatureLogitsWarper(temperature))
        if top_k:
            procs.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p))
    return procs


def decode(model, input_ids, attention_mask, *, max_new_tokens: int, eos_ids: Iterable[int],
           do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
           repetition_penalty: float = 1.0, num_return_sequences: int = 1) -> list[list[int]]:
    """New tokens for each row of a left-padded batch (each row repeated
    ``num_return_sequences`` times, in order), up to and including its end token."""
    import torch
    from transformers import DynamicCache

    if num_return_sequences > 1:
        input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
        attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
    procs = logits_processors(do_sample, temperature, top_p, top_k, repetition_penalty)
    eos = torch.tensor(sorted(set(eos_ids)), device=input_ids.device)
    rows = input_ids.size(0)
    out: list[list[int]] = [[] for _ in range(rows)]
    alive = torch.arange(rows, device=input_ids.device)  # batch position -> output row
    seqs, mask = input_ids, attention_mask
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        step_ids = seqs
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        for step in range(max_new_tokens):
            logits = model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                           past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
            scores = procs(seqs, logits.float())
            if do_sample:
                nxt = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            else:
                nxt = scores.argmax(dim=-1)
            for row, token in zip(alive.tolist(), nxt.tolist()):
                out[row].append(token)
            done = torch.isin(nxt, eos)
            if step + 1 == max_new_tokens or bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                alive, nxt, seqs, mask = alive[keep], nxt[keep], seqs[keep], mask[keep]
            seqs = torch.cat([seqs, nxt[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones((mask.size(0), 1))], dim=1)
            positions = mask.sum(dim=1, keepdim=True) - 1
            step_ids = nxt[:, None]
    return out


def end_token_ids(model, tokenizer) -> set[int]:
    """Every token that ends an answer: the generation config's and the tokenizer's EOS."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def encode_prompt(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Token ids of a conversation (or plain text) ending where the assistant's turn starts.

    The chat template is rendered once and tokenised without adding special tokens again
    (templates that start with ``{{ bos_token }}`` would otherwise get two BOS tokens).
    """
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if tokenizer.chat_template is None:
        text = "\n\n".join(m["content"] for m in prompt)
        return tokenizer(text).input_ids  # no template: the tokenizer's own BOS rule applies
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False).input_ids


def generate_ids(model, tokenizer, encoded: Sequence[list[int]], *, max_new_tokens: int,
                 num_return_sequences: int = 1, batch_size: int = 16, seed: int | None = None,
                 do_sample: bool = False, progress: str | None = None,
                 **sampling: Any) -> list[list[Generation]]:
    """``num_return_sequences`` answers to each prompt of token ids, batched.

    Prompts are sorted by length (similar lengths share a batch, so little padding is
    wasted) and left-padded; sampled answers to one prompt come from the same batch.
    Greedy decoding gives the same answer every time, so it is computed once per prompt
    and repeated. ``progress`` names a progress bar (shown on a terminal only).
    """
    import torch
    from tqdm.auto import tqdm

    if seed is not None:
        torch.manual_seed(seed)
    n_call = num_return_sequences if do_sample else 1
    eos_ids = end_token_ids(model, tokenizer)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out: list[list[Generation]] = [[] for _ in encoded]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    starts = range(0, len(order), batch_size)
    device = next(model.parameters()).device
    try:
        for start in tqdm(starts, desc=progress or "generate", unit="batch",
                          disable=None if progress else True, leave=False):
            rows = order[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [list(encoded[i]) for i in rows]},
                                  return_tensors="pt")
            new = decode(model, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                         max_new_tokens=max_new_tokens, eos_ids=eos_ids, do_sample=do_sample,
                         num_return_sequences=n_call, **sampling)
            for j, ids in enumerate(new):
                row = rows[j // n_call]
                end = next((k for k, t in enumerate(ids) if t in eos_ids), None)
                kept = ids if end is None else ids[:end + 1]
                gen = Generation(tokenizer.decode(kept, skip_special_tokens=True),
                                 "length" if end is None else "stop", len(kept))
                out[row] += [gen] * (1 if do_sample else num_return_sequences)
    finally:
        tokenizer.padding_side = side
    return out


def generate(model, tokenizer, prompts: Sequence[str | list[dict]], **kwargs: Any
             ) -> list[list[Generation]]:
    """:func:`generate_ids` for prompts given as text or conversations."""
    return generate_ids(model, tokenizer, [encode_prompt(tokenizer, p) for p in prompts],
                        **kwargs)


@contextlib.contextmanager
def adapter_merged(model) -> Iterator[None]:
    """Decode a LoRA policy at the base model's speed: fold the adapter into the weights
    for the duration, then take it out again (PEFT's merge/unmerge, in place)."""
    merge = getattr(model, "merge_adapter", None)
    if merge is None or getattr(model, "peft_config", None) is None:
        yield
        return
    merge()
    try:
        yield
    finally:
        model.unmerge_adapter()
