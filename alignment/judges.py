"""AI judges that turn a (prompt, response) pair into a number, or honestly into None.

``RatingJudge`` reads the rating off the judge model's next-token distribution instead
of parsing free text (the G-Eval idea): a 135M model asked for a verdict rarely writes
anything parseable, but one forward pass over a strict rubric prompt ending in
"Rating: " still ranks the digit tokens. We renormalise the probabilities of the scale's
digits, take their expectation as the score, and keep how much of the whole
distribution the digits got (``digit_mass``): a low mass means the model was not about
to answer with a digit, and every consumer can see it.

``PairwiseJudge`` applies the same reading to a comparison: two responses, shown in both
orders, and the probabilities of the labels "A" and "B". A verdict counts only where
both orders agree; where they disagree the judge was following the position, and the
item is a tie.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from alignment.errors import ConfigError
from alignment.rubrics import (PAIRWISE_JUDGE_TEMPLATE, PAIRWISE_PREFIX, RATING_JUDGE_TEMPLATE,
                               RATING_PREFIX, RATING_RUBRICS)

TRUNCATION_MARK = " [...]"


def inference_dtype():
    """The judges' dtype: bf16 where the machine multiplies it natively, else float32
    (``alignment.engine.pick_dtype``)."""
    import torch

    from alignment.engine import pick_dtype

    return getattr(torch, pick_dtype()[0])


class RatingJudge:
    """Scores responses by the probability the judge model gives each rating digit.

    Args:
        model: a bundled model name, a model folder or a hub id (see
            ``alignment.models.resolve_model``).
        rubric: an aspect name from ``alignment.rubrics.RATING_RUBRICS``, a rubric
            sentence of your own, or a
            sequence of aspect names (then each item gets per-aspect ``ratings`` and the
            overall ``score`` is their mean, or None if any aspect has none).
        scale: lowest and highest rating, inclusive; each must be one digit (1..5, 0..4).
        batch_size: pairs per forward pass.
        prefix: text put after the assistant generation prompt, so the very next token
            is the rating.
        max_length: token budget of a judge prompt; defaults to the model's context.
        min_digit_mass: below this digit mass a verdict is withheld (score None).
    """

    def __init__(self, model: str = "smollm2", rubric: str | Sequence[str] = "overall",
                 scale: tuple[int, int] = (1, 5), batch_size: int = 8,
                 prefix: str = RATING_PREFIX, max_length: int | None = None,
                 min_digit_mass: float = 0.0, template: str = RATING_JUDGE_TEMPLATE):
        low, high = scale
        if not (0 <= low < high <= 9):
            raise ConfigError(f"scale {scale}: ratings must be single digits, low < high "
                              "(e.g. (1, 5) or (0, 4))")
        self.model_spec = str(model)
        self.aspects = [rubric] if isinstance(rubric, str) else list(rubric)
        if not self.aspects:
            raise ConfigError("rubric: give an aspect name, a rubric sentence or a list of aspects")
        self.scale, self.batch_size, self.prefix = (low, high), batch_size, prefix
        self.template, self.min_digit_mass = template, min_digit_mass
        self._load(max_length)

    @property
    def name(self) -> str:
        return f"rating-judge:{self.model_spec}"

    def rubric_text(self, aspect: str) -> str:
        return RATING_RUBRICS.get(aspect, aspect)

    def _load(self, max_length: int | None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from alignment.models import resolve_model

        path = resolve_model(self.model_spec)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"  # the rating is read at the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=inference_dtype()).eval()
        context = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_length = min(max_length or context, context)
        self.digit_ids = self._digit_token_ids()

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _digit_token_ids(self) -> dict[int, list[int]]:
        """Token ids that spell each rating digit right after the prefix."""
        digits = [str(d) for d in range(self.scale[0], self.scale[1] + 1)]
        ids = label_token_ids(self.tokenizer, self.prefix, digits, self.model_spec, kind="rating")
        return {int(d): spellings for d, spellings in ids.items()}

    def render(self, aspect: str, instruction: str, response: str) -> str:
        """The judge prompt as text, up to and including the rating prefix."""
        low, high = self.scale
        user = self.template.format(rubric=self.rubric_text(aspect), instruction=instruction,
                                    response=response, low=low, high=high)
        return judge_prompt(self.tokenizer, user, self.prefix)

    def _fit(self, aspect: str, instruction: str, response: str) -> tuple[list[int] | None, dict]:
        """Token ids of the judge prompt, truncating the response's tail if it is too long."""
        ids = self._encode(self.render(aspect, instruction, response))
        info: dict[str, Any] = {"prompt_tokens": len(ids), "truncated": False}
        if len(ids) <= self.max_length:
            return ids, info
        resp_ids = self._encode(response)
        # margin for the mark and for tokens merging differently at the cut
        keep = len(resp_ids) - (len(ids) - self.max_length) - 16
        if keep > 0:
            cut = self.tokenizer.decode(resp_ids[:keep]) + TRUNCATION_MARK
            ids = self._encode(self.render(aspect, instruction, cut))
            info.update(truncated=True, response_tokens_kept=keep, prompt_tokens=len(ids))
            if len(ids) <= self.max_length:
                return ids, info
        info["error"] = (f"judge prompt needs {info['prompt_tokens']} tokens even with the "
                         f"response truncated; the judge's context is {self.max_length}")
        return None, info

    def _verdicts(self, aspect: str, prompts: Sequence[str], responses: Sequence[str]
                  ) -> list[dict]:
        import torch
        from tqdm.auto import tqdm

        fitted = [self._fit(aspect, p, r) for p, r in zip(prompts, responses, strict=True)]
        results: list[dict | None] = [None] * len(fitted)
        todo = sorted((i for i, (ids, _) in enumerate(fitted) if ids is not None),
                      key=lambda i: -len(fitted[i][0]))
        digits = list(self.digit_ids)
        for start in tqdm(range(0, len(todo), self.batch_size), desc=f"judge [{aspect}]",
                          unit="batch", disable=None, leave=False):
            rows = todo[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [fitted[i][0] for i in rows]},
                                       return_tensors="pt")
            mask = batch["attention_mask"]
            # left padding: positions must count real tokens only, as generate() does
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(input_ids=batch["input_ids"], attention_mask=mask,
                                    position_ids=positions, logits_to_keep=1).logits[:, -1]
            probs_all = torch.softmax(logits.float(), dim=-1)
            for j, i in enumerate(rows):
                p = probs_all[j]
                mass = [float(p[self.digit_ids[d]].sum()) for d in digits]
                top = torch.topk(p, 5)
                results[i] = self._verdict(digits, mass, fitted[i][1], [
                    (self.tokenizer.decode([t]), round(float(v), 4))
                    for v, t in zip(top.values.tolist(), top.indices.tolist())])
        for i, (ids, info) in enumerate(fitted):
            if ids is None:
                results[i] = self._verdict(digits, None, info, [])
        return results  # type: ignore[return-value]

    def _verdict(self, digits: list[int], mass: list[float] | None, info: dict,
                 top: list) -> dict:
        raw = {"judge": self.name, **info, "top_tokens": top}
        total = sum(mass) if mass is not None else 0.0
        if mass is None or not math.isfinite(total) or total <= 0:
            raw.setdefault("error", "the judge gave no probability to any rating digit")
            return {"score": None, "probs": [], "digit_mass": total, "raw": json.dumps(raw)}
        probs = [m / total for m in mass]
        score = sum(d * q for d, q in zip(digits, probs))
        raw.update(digit_probs={str(d): round(q, 4) for d, q in zip(digits, probs)},
                   digit_mass=round(total, 4))
        if total < self.min_digit_mass:
            raw["error"] = f"digit mass {total:.3f} below min_digit_mass {self.min_digit_mass}"
            score = None
        return {"score": score, "probs": probs, "digit_mass": total, "raw": json.dumps(raw)}

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[dict]:
        """One verdict per (prompt, response): ``score`` (None when withheld), ``probs``
        over the scale's digits, ``digit_mass`` and ``raw`` (a JSON string, always kept).
        With several aspects, each verdict also has ``ratings`` {aspect: score|None}."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        per_aspect = {a: self._verdicts(a, prompts, responses) for a in self.aspects}
        if len(self.aspects) == 1:
            return per_aspect[self.aspects[0]]
        out = []
        for i in range(len(prompts)):
            ratings = {a: per_aspect[a][i]["score"] for a in self.aspects}
            known = [s for s in ratings.values() if s is not None]
            out.append({
                "score": sum(known) / len(known) if len(known) == len(ratings) else None,
                "ratings": ratings,
                "probs": {a: per_aspect[a][i]["probs"] for a in self.aspects},
                "digit_mass": min(per_aspect[a][i]["digit_mass"] for a in self.aspects),
                "raw": json.dumps({a: json.loads(per_aspect[a][i]["raw"])
                                   for a in self.aspects}),
            })
        return out


# ---------------------------------------------------------------------------------------
# Pairwise: which of two responses is better, asked in both orders

class PairwiseJudge:
    """Picks the better of two responses from the probabilities of the labels "A" and "B".

    Each pair is shown twice, once as (A=a, B=b) and once swapped, one batched forward
    pass per order; the judge's next-token probabilities of "A" and "B" after
    ``prefix`` are renormalised over the two labels. Per item:

    - ``p_a_first``: probability that response ``a`` is better when shown first (as A);
    - ``p_a_second``: the same when ``a`` is shown second (as B);
    - ``p_a``: their mean, the order-averaged probability that ``a`` is better;
    - ``consistent``: both orders pick the same response (each strictly past 0.5);
    - ``winner``: ``"a"`` or ``"b"`` where the orders agree (then ``p_a`` is on that side
      of 0.5 too); ``"tie"`` where they disagree, which is position bias, not a verdict
      on content (or where a probability is exactly 0.5); ``None`` where no verdict was
      possible (prompt too long for the judge even truncated, or no mass on either label);
    - ``label_mass``: the smallest share, over the two orders, of the whole next-token
      distribution that went to "A" or "B" (low: the judge was not about to answer);
    - ``raw``: a JSON string with both orders' probabilities, top tokens and any error.

    Args:
        model: a bundled model name, a model folder or a hub id.
        batch_size: prompts per forward pass.
        max_length: token budget of a judge prompt (default: the model's context);
            longer responses lose their tails, evenly.
        prefix: text after the assistant generation prompt, so the next token is a label.
        template: the user turn, with ``{instruction}``, ``{response_a}``, ``{response_b}``.

    A small judge (the bundled 135M SmolLM2) is weak and strongly position-biased: expect
    many ties and treat its verdicts as a smoke signal, not a measurement.
    """

    labels = ("A", "B")

    def __init__(self, model: str = "smollm2", batch_size: int = 8,
                 max_length: int | None = None, prefix: str = PAIRWISE_PREFIX,
                 template: str = PAIRWISE_JUDGE_TEMPLATE):
        self.model_spec, self.batch_size = str(model), batch_size
        self.prefix, self.template = prefix, template
        self.tokenizer, self.model, self.max_length = _load_judge_model(self.model_spec,
                                                                        max_length)
        self.label_ids = label_token_ids(self.tokenizer, self.prefix, self.labels,
                                         self.model_spec)

    @property
    def name(self) -> str:
        return f"pairwise-judge:{self.model_spec}"

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def render(self, instruction: str, response_a: str, response_b: str) -> str:
        """The judge prompt as text, up to and including the label prefix."""
        user = self.template.format(instruction=instruction, response_a=response_a,
                                    response_b=response_b)
        return judge_prompt(self.tokenizer, user, self.prefix)

    def _fit(self, instruction: str, first: str, second: str) -> tuple[list[int] | None, dict]:
        """Token ids of one order's prompt, cutting both responses' tails if too long."""
        ids = self._encode(self.render(instruction, first, second))
        info: dict[str, Any] = {"prompt_tokens": len(ids), "truncated": False}
        if len(ids) <= self.max_length:
            return ids, info
        a_ids, b_ids = self._encode(first), self._encode(second)
        # margin for the marks and for tokens merging differently at the cuts
        budget = self.max_length - (len(ids) - len(a_ids) - len(b_ids)) - 24
        if budget > 0:
            keep_a = min(len(a_ids), max(budget // 2, budget - len(b_ids)))
            keep_b = min(len(b_ids), budget - keep_a)

            def cut(tokens: list[int], keep: int) -> str:
                text = self.tokenizer.decode(tokens[:keep])
                return text + TRUNCATION_MARK if keep < len(tokens) else text
            ids = self._encode(self.render(instruction, cut(a_ids, keep_a), cut(b_ids, keep_b)))
            info.update(truncated=True, prompt_tokens=len(ids))
            if len(ids) <= self.max_length:
                return ids, info
        info["error"] = (f"judge prompt needs {info['prompt_tokens']} tokens even with the "
                         f"responses truncated; the judge's context is {self.max_length}")
        return None, info

    def _label_probs(self, prompts: list[list[int] | None], desc: str) -> list[dict | None]:
        """For each prompt: P(A), P(B) renormalised, their mass and the top tokens."""
        out: list[dict | None] = [None] * len(prompts)
        todo = [i for i, ids in enumerate(prompts) if ids is not None]
        for i, probs in zip(todo, next_token_distributions(self.model, self.tokenizer,
                                                    [prompts[i] for i in todo],
                                                    self.batch_size, desc)):
            mass = {label: float(probs[ids].sum()) for label, ids in self.label_ids.items()}
            total = mass["A"] + mass["B"]
            top = _top_tokens(self.tokenizer, probs)
            out[i] = {"p_A": mass["A"] / total if total > 0 and math.isfinite(total) else None,
                      "label_mass": total, "top_tokens": top}
        return out

    def compare(self, prompts: Sequence[str], responses_a: Sequence[str],
                responses_b: Sequence[str]) -> list[dict]:
        """One verdict per (prompt, a, b); see the class docstring for the fields."""
        if not len(prompts) == len(responses_a) == len(responses_b):
            raise ValueError(f"{len(prompts)} prompts, {len(responses_a)} responses a and "
                             f"{len(responses_b)} responses b: give one of each per item")
        first = [self._fit(p, a, b) for p, a, b in zip(prompts, responses_a, responses_b)]
        second = [self._fit(p, b, a) for p, a, b in zip(prompts, responses_a, responses_b)]
        probs_first = self._label_probs([ids for ids, _ in first], "judge [a first]")
        probs_second = self._label_probs([ids for ids, _ in second], "judge [a second]")
        return [self._verdict(f, s, fi, si) for f, s, (_, fi), (_, si)
                in zip(probs_first, probs_second, first, second)]

    def _verdict(self, first: dict | None, second: dict | None, info_first: dict,
                 info_second: dict) -> dict:
        raw: dict[str, Any] = {"judge": self.name, "a_first": {**info_first, **(first or {})},
                               "a_second": {**info_second, **(second or {})}}
        # in the second order a is shown as B, so a wins with the probability of "B"
        p_first = first["p_A"] if first else None
        p_second = 1 - second["p_A"] if second and second["p_A"] is not None else None
        mass = min(first["label_mass"] if first else 0.0, second["label_mass"] if second else 0.0)
        if p_first is None or p_second is None:
            raw.setdefault("error", info_first.get("error") or info_second.get("error")
                           or "the judge gave no probability to either label")
            return {"p_a_first": p_first, "p_a_second": p_second, "p_a": None, "winner": None,
                    "consistent": False, "label_mass": mass, "raw": json.dumps(raw)}

        def side(p: float) -> str:
            return "a" if p > 0.5 else "b" if p < 0.5 else "tie"
        consistent = side(p_first) == side(p_second) != "tie"
        p_a = (p_first + p_second) / 2
        winner = side(p_a) if consistent else "tie"
        return {"p_a_first": p_first, "p_a_second": p_second, "p_a": p_a, "winner": winner,
                "consistent": consistent, "label_mass": mass, "raw": json.dumps(raw)}


def label_token_ids(tokenizer, prefix: str, labels, judge: str, kind: str = "label"
                    ) -> dict[str, list[int]]:
    """Every single-token spelling of each label right after ``prefix``: the token the
    tokenizer writes there, and the bare and space-led variants when they are single
    tokens (a model may prefer either). A label with no such spelling, or two labels
    sharing a token, is an error naming the ``judge`` model."""
    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    base, out = encode(prefix), {}
    for label in labels:
        full = encode(prefix + label)
        ids = {full[-1]} if full[:len(base)] == base and len(full) == len(base) + 1 else set()
        for variant in (label, f" {label}"):
            if len(enc := encode(variant)) == 1:
                ids.add(enc[0])
        if not ids:
            raise ConfigError(f"judge model {judge}: the {kind} '{label}' is not a single "
                              "token in its tokenizer; use a different judge model")
        out[label] = sorted(ids)
    every = [t for ids in out.values() for t in ids]
    if len(set(every)) != len(every):
        raise ConfigError(f"judge model {judge}: two {kind}s share a token")
    return out


def judge_prompt(tokenizer, user: str, prefix: str = "") -> str:
    """One user turn in the judge's chat template (plain text without one), then the
    verdict prefix the next token's probabilities are read after."""
    if tokenizer.chat_template is None:
        return f"{user}\n\n{prefix}"
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)
    return text + prefix


def _top_tokens(tokenizer, probs, k: int = 5) -> list:
    import torch

    top = torch.topk(probs, k)
    return [(tokenizer.decode([t]), round(float(v), 4))
            for v, t in zip(top.values.tolist(), top.indices.tolist())]


def _load_judge_model(spec: str, max_length: int | None):
    """(tokenizer padding on the left, model in eval mode, prompt token budget)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.models import resolve_model

    path = resolve_model(spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"  # the verdict is read at the right edge
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=inference_dtype()).eval()
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    return tokenizer, model, min(max_length or context, context)


def next_token_distributions(model, tokenizer, prompts: list[list[int]], batch_size: int,
                             desc: str) -> list:
    """Next-token distributions after each prompt, longest first in left-padded batches;
    returned in the prompts' order."""
    import torch
    from tqdm.auto import tqdm

    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list = [None] * len(prompts)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch",
                      disable=None, leave=False):
        rows = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [prompts[i] for i in rows]}, return_tensors="pt")
        mask = batch["attention_mask"]
        # left padding: positions must count real tokens only, as generate() does
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"], attention_mask=mask,
                           position_ids=positions, logits_to_keep=1).logits[:, -1]
        probs = torch.softmax(logits.float(), dim=-1)
        for j, i in enumerate(rows):
            out[i] = probs[j]
    return out
