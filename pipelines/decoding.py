"""Batched decoding that drops each sequence from the batch as soon as it ends.

Why not ``model.generate``: it keeps a finished sequence in the batch, padded, until the
longest one stops, so a batch whose answers end at 20, 30 and 64 tokens pays for 64 steps
of all of them. On a CPU, where a step's cost grows with the rows in it, that waste is a
large part of a pipeline's time. transformers' continuous-batching API
(``generate_batch``) removes finished rows too, but its paged-attention bookkeeping made it
slower than plain ``generate`` on CPU in our measurements. This loop uses the model's own
forward, its ``DynamicCache`` (``batch_select_indices`` compacts it) and transformers'
public logits processors, so greedy decoding picks the same tokens as ``generate``
(``tests/test_llms.py`` checks this against unbatched ``generate``).
"""

from __future__ import annotations

from collections.abc import Iterable


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
