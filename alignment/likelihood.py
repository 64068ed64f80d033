"""How likely a model finds an answer to a chat prompt, and which of several it ranks first.

A multiple-choice question is asked as a conversation (``messages``), optionally with the
start of the assistant's reply written for it (``prefix``, e.g. "The winner of the 2031
Orbital Chess Cup is"), and each candidate answer is a continuation of that reply. A
candidate's score is the total log-probability of its tokens; the model's pick is the
highest-scoring candidate.

An answer is scored as it is tokenised together with the text before it: prompt and
answer are tokenised as one string and the tokens after the prompt's are scored, after
checking that the prompt's own tokens are a prefix of the whole. Tokenised apart, an
answer loses its leading space and becomes tokens the model never reads in that place:
with SmolLM2's tokenizer " Ada." after "... is" is ``ĠAda .``, but "Ada." alone is
``Ad a .``; and the apart count no longer says where the answer starts in the whole.

The chat template is rendered once and tokenised without adding special tokens, as
``alignment.engine.encode_prompt`` does for generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """A multiple-choice question: ``candidates`` continue ``prefix`` after ``messages``;
    ``answer`` is the index of the right one."""

    messages: list[dict]
    candidates: list[str]
    answer: int
    prefix: str = ""


def prompt_text(tokenizer, messages: list[dict], prefix: str = "") -> str:
    """The conversation rendered up to where the assistant's reply starts, then ``prefix``."""
    if tokenizer.chat_template is None:
        return "\n\n".join(m["content"] for m in messages) + prefix
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=True) + prefix


def encode_answer(tokenizer, prompt: str, answer: str) -> tuple[list[int], int]:
    """Token ids of ``prompt + answer`` tokenised as one string, and where the answer's
    tokens start. Raises ValueError when the prompt's tokens are not a prefix of them
    (the prompt ends inside a token the answer completes, e.g. with a trailing space)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    ids = tokenizer(prompt + answer, add_special_tokens=False).input_ids
    if ids[:len(prompt_ids)] != prompt_ids:
        raise ValueError(f"the prompt's last tokens merge with the answer {answer!r}: end the "
                         "prompt at a word boundary (put the space before a word in the "
                         "answer, not at the end of the prompt)")
    if len(ids) == len(prompt_ids):
        raise ValueError(f"the answer {answer!r} adds no token to its prompt")
    return ids, len(prompt_ids)


def answer_logprobs(model, tokenizer, messages: list[dict], answers: Sequence[str],
                    prefix: str = "") -> list[float]:
    """The total log-probability of each answer continuing ``prefix`` after ``messages``.

    The prompt runs through the model once; every answer then continues from its cached
    keys and values, which is valid because the prompt's tokens are the same prefix of
    each ``prompt + answer`` (``encode_answer`` checks it)."""
    import torch

    prompt = prompt_text(tokenizer, messages, prefix)
    encoded = [encode_answer(tokenizer, prompt, a) for a in answers]
    start = encoded[0][1]
    tails = [ids[start:] for ids, _ in encoded]
    device = next(model.parameters()).device
    n, width = len(tails), max(len(t) for t in tails)
    ids = torch.full((n, width), _pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((n, start + width), dtype=torch.long)
    mask[:, :start] = 1
    for i, t in enumerate(tails):
        ids[i, :len(t)] = torch.tensor(t)
        mask[i, start:start + len(t)] = 1
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([encoded[0][0][:start]], device=device),
                    use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # each answer's 1st token
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       past_key_values=cache, use_cache=False,
                       position_ids=torch.arange(start, start + width,
                                                 device=device).expand(n, -1)).logits.float()
        # answer token t is predicted by the logits at answer position t - 1
        rest = torch.log_softmax(logits[:, :-1], dim=-1).gather(
            -1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
    return [float(first[t[0]]) + float(rest[i, :len(t) - 1].sum())
            for i, t in enumerate(tails)]


def rank(model, tokenizer, choices: Sequence[Choice]) -> list[list[float]]:
    """Every candidate's score (``answer_logprobs``), question by question."""
    return [answer_logprobs(model, tokenizer, c.messages, c.candidates, c.prefix)
            for c in choices]


def picks(scores: Sequence[Sequence[float]]) -> list[int]:
    """The index of the highest score of each question (the first of a tie)."""
    return [max(range(len(s)), key=s.__getitem__) for s in scores]


def accuracy(choices: Sequence[Choice], picked: Sequence[int]) -> dict:
    """Fraction picked right, its Wilson 95% interval, and the chance level (the mean
    of 1 / number of candidates)."""
    from scipy.stats import binomtest

    if not choices or len(choices) != len(picked):
        raise ValueError(f"{len(picked)} picks for {len(choices)} questions")
    correct = sum(c.answer == p for c, p in zip(choices, picked))
    ci = binomtest(correct, len(choices)).proportion_ci(0.95, method="wilson")
    return {"accuracy": correct / len(choices), "correct": correct, "n": len(choices),
            "ci95": [float(ci.low), float(ci.high)],
            "chance": sum(1 / len(c.candidates) for c in choices) / len(choices)}


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id
