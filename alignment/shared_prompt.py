"""One forward pass per preference pair: the prompt is computed once for both answers.

TRL's DPOTrainer stacks a batch of pairs as ``[chosen_1..chosen_B, rejected_1..rejected_B]``,
each row ``prompt + answer``, right-padded to the longest row. Every prompt is therefore run
through the model twice (chosen and rejected rows), the shorter answer of each pair is padded,
and off accelerators TRL's fused LM head scores every position, padding and prompt included.

Here each pair becomes one row ``prompt + chosen + rejected``. A 4-D attention mask keeps the
rejected answer from seeing the chosen one, and its position ids restart where the prompt
ends, so every token sees exactly the context it sees in TRL's layout. The answer tokens are
then scored from the hidden state of the token before them in their own sequence (the
rejected answer's first token from the prompt's last one), through TRL's public chunked
log-prob kernel, and put back in TRL's ``(2B, L-1)`` layout. The log-probabilities, and so
every DPO loss variant TRL implements, are the same up to float rounding (tests check the
loss and the gradients against TRL's own path); only the work shrinks.

Why patch the forward: the DPO loss and its many variants live in one private method of
DPOTrainer that calls ``model(..., labels=..., fused_lm_head=True)``; TRL itself installs its
fused head by wrapping ``model.forward`` (``trl.trainer.utils.add_fused_lm_head``). We wrap that
wrapper, so the losses stay TRL's. Batches that do not have the pair layout (or models and
attention kernels this does not handle) go through TRL's forward unchanged.
"""

from __future__ import annotations

import types

import torch

# Attention kernels that accept a custom 4-D mask: SDPA takes a boolean one, eager an
# additive float one. FlashAttention takes no mask, so it keeps TRL's path.
_MASK_KINDS = {"sdpa": "bool", "eager": "float"}


def supported(model) -> str | None:
    """Why this model cannot use prompt sharing, or None when it can."""
    config = model.config.get_text_config()
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in _MASK_KINDS:
        return f"attention implementation {impl!r} takes no custom mask (sdpa or eager do)"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "sliding-window attention"
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier",
                 "lm_head_multiplier", "logits_scaling"):
        if getattr(config, name, None) not in (None, 1, 1.0):
            return f"the model scales its logits ({name})"
    if getattr(config, "output_router_logits", False):
        return "mixture-of-experts router losses"
    if model.get_output_embeddings() is None:
        return "no output embeddings"
    return None


def enable(trainer) -> str | None:
    """Route the DPO trainer's pair forwards through the shared-prompt layout.

    Call after the trainer is built (TRL installs its fused LM head in __init__). Returns
    None when enabled, else the reason it was not (the trainer then runs as TRL's)."""
    from peft import PeftModel

    model = trainer.model
    if isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning:
        # the policy's forward then feeds input embeddings (the soft prompt's, then the
        # tokens'), which the shared layout does not take
        return "a soft prompt (prompt tuning) goes in as input embeddings"
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    reason = supported(base)
    if reason is not None:
        return reason
    # the fields TRL's DPO loss and metrics read from the policy's output
    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    if getattr(trainer, "use_weighting", False):
        outputs += ("log_sum_sq_probs",)
    _wrap(base, outputs)
    ref = getattr(trainer, "ref_model", None)  # a full fine-tune's separate reference copy
    if ref is not None and supported(ref) is None:
        _wrap(ref, ("log_probs",))
    return None


def _wrap(model, outputs: tuple[str, ...]) -> None:
    fused_forward = model.forward  # TRL's fused-head wrapper, bound to the model

    def forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        # PeftModelForCausalLM passes inputs_embeds, output_* and return_dict as None
        extra = {k for k, v in kwargs.items() if v is not None and v is not False} - {
            "input_ids", "attention_mask", "use_cache", "return_dict"}
        if fused_lm_head and labels is not None and not args and not extra:
            layout = pair_layout(kwargs.get("input_ids"), kwargs.get("attention_mask"), labels)
            if layout is not None:
                return shared_forward(self, kwargs["input_ids"], labels, layout, outputs)
        return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)

    model.forward = types.MethodType(forward, model)


class PairLayout:
    """Where each pair's prompt and answers sit, in TRL's rows and in the packed rows."""

    def __init__(self, prompt: list[int], chosen: list[int], rejected: list[int]):
        self.prompt, self.chosen, self.rejected = prompt, chosen, rejected

    @property
    def packed_lengths(self) -> list[int]:
        return [p + c + r for p, c, r in zip(self.prompt, self.chosen, self.rejected)]


def pair_layout(input_ids, attention_mask, labels) -> PairLayout | None:
    """The pair structure of a DPO batch, or None if the batch does not have it.

    Rows i and B+i must be one pair: right-padded, the same prompt tokens (labels -100) then
    at least one answer token each, and no gaps in the answer."""
    if input_ids is None or attention_mask is None or input_ids.dim() != 2:
        return None
    rows = input_ids.size(0)
    if rows % 2 or rows == 0:
        return None
    answer = labels != -100
    lengths = attention_mask.sum(dim=1)
    # right padding: the mask is a run of ones from position 0
    positions = torch.arange(input_ids.size(1), device=input_ids.device)
    if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
        return None
    has_answer = answer.any(dim=1)
    if not bool(has_answer.all()):
        return None
    starts = answer.int().argmax(dim=1)
    # the answer runs from its start to the row's end, without holes
    if not torch.equal(answer, (positions[None, :] >= starts[:, None]) & (positions[None, :] < lengths[:, None])):
        return None
    half = rows // 2
    starts_c, starts_r = starts[:half].tolist(), starts[half:].tolist()
    if starts_c != starts_r:
        return None
    lengths = lengths.tolist()
    prompt = starts_c
    for i, p in enumerate(prompt):
        if p == 0 or not torch.equal(input_ids[i, :p], input_ids[half + i, :p]):
            return None
    chosen = [lengths[i] - prompt[i] for i in range(half)]
    rejected = [lengths[half + i] - prompt[i] for i in range(half)]
    return PairLayout(prompt, chosen, rejected)


def pack(input_ids: torch.Tensor, layout: PairLayout, mask_kind: str, dtype: torch.dtype):
    """Packed ids, position ids, the 4-D mask, and for every answer token of TRL's layout (in
    row-major order of its shifted label mask) the packed position whose hidden state scores it."""
    half = len(layout.prompt)
    width = max(layout.packed_lengths)
    device = input_ids.device
    ids = input_ids.new_zeros((half, width))
    pos = torch.zeros((half, width), dtype=torch.long, device=device)
    allowed = torch.zeros((half, 1, width, width), dtype=torch.bool, device=device)
    causal = torch.ones((width, width), dtype=torch.bool, device=device).tril()
    src_rows: list[torch.Tensor] = [None] * (2 * half)
    for i, (p, c, r) in enumerate(zip(layout.prompt, layout.chosen, layout.rejected)):
        n = p + c + r
        ids[i, :p + c] = input_ids[i, :p + c]
        ids[i, p + c:n] = input_ids[half + i, p:p + r]
        pos[i, :p + c] = torch.arange(p + c, device=device)
        pos[i, p + c:n] = torch.arange(p, p + r, device=device)
        allowed[i, 0, :n, :n] = causal[:n, :n]
        allowed[i, 0, p + c:n, p:p + c] = False  # the rejected answer never sees the chosen one
        # padding rows attend to themselves only, so no softmax row is empty
        pad = torch.arange(n, width, device=device)
        allowed[i, 0, pad, pad] = True
        # chosen token at t (p <= t < p+c) is scored from packed t-1;
        # rejected token at t is scored from p-1 first, then from its packed predecessor
        src_rows[i] = torch.arange(p - 1, p + c - 1, device=device)
        src_rows[half + i] = torch.cat([torch.tensor([p - 1], device=device),
                                        torch.arange(p + c, p + c + r - 1, device=device)])
    if mask_kind == "float":
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    else:
        mask = allowed
    pair_index = torch.cat([torch.full((len(s),), j % half, dtype=torch.long, device=device)
                            for j, s in enumerate(src_rows)])
    source = torch.cat(src_rows)
    return ids, pos, mask, pair_index, source


def shared_forward(model, input_ids, labels, layout: PairLayout, outputs: tuple[str, ...]):
    """TRL's fused-head output for a pair batch, computed on the packed rows."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import FusedCausalLMOutput

    impl = model.config._attn_implementation
    ids, pos, mask, pair_index, source = pack(input_ids, layout, _MASK_KINDS[impl], model.dtype)
    hidden = model.base_model(input_ids=ids, attention_mask=mask, position_ids=pos,
                              use_cache=False).last_hidden_state
    shifted = labels[:, 1:]
    label_mask = shifted != -100
    targets = shifted[label_mask]
    lm_head = model.get_output_embeddings()
    selected = hidden[pair_index, source].to(lm_head.weight.device)
    per_token = ChunkedLogProbFunction.apply(selected, lm_head.weight, lm_head.bias,
                                             targets.to(lm_head.weight.device), 1.0, 32768, None, 1.0,
                                             outputs)
    # back into TRL's layout; masked_scatter fills in row-major order, the order built above
    log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (
        None if x is None else x.new_zeros(label_mask.shape).masked_scatter(label_mask, x)
        for x in per_token)
    loss = -log_probs.sum() / label_mask.sum().clamp(min=1)
    return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy,
                               log_sum_sq_probs=log_sum_sq_probs, mean_logits=mean_logits,
                               is_top1=is_top1, label_mask=label_mask)
