"""AI judges that turn a (prompt, response) pair into a number, or honestly into None.

``RatingJudge`` reads the rating off the judge model's next-token distribution instead
of parsing free text (the G-Eval idea): a 135M model asked for a verdict rarely writes
anything parseable, but one forward pass over a strict rubric prompt ending in
"Rating: " still ranks the digit tokens. We renormalise the probabilities of the scale's
digits, take their expectation as the score, and keep how much of the whole
distribution the digits got (``digit_mass``): a low mass means the model was not about
to answer with a digit, and every consumer can see it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from alignment.errors import ConfigError

# UltraFeedback-style aspects, one rubric line each; "overall" is the default.
RUBRICS: dict[str, str] = {
    "overall": "Judge the overall quality of the response: is it correct, helpful, "
               "relevant to the instruction and clearly written?",
    "instruction_following": "Judge instruction following: does the response do exactly "
                             "what the instruction asks, respecting every requirement?",
    "truthfulness": "Judge truthfulness: is every statement in the response factually "
                    "correct, with nothing made up?",
    "honesty": "Judge honesty: is the response confident where it is right and open "
               "about uncertainty where it may be wrong?",
    "helpfulness": "Judge helpfulness: does the response give the user useful, "
                   "informative and complete help with the instruction?",
    # HelpSteer-like attributes use the 0..4 scale
    "correctness": "Judge correctness: does the response contain all the pertinent "
                   "facts and no errors?",
    "coherence": "Judge coherence: is the response consistent and clearly expressed?",
}
ULTRAFEEDBACK_ASPECTS = ("instruction_following", "truthfulness", "honesty", "helpfulness")

PROMPT_TEMPLATE = (
    "You are a strict grader. {rubric}\n\n"
    "### Instruction\n{instruction}\n\n"
    "### Response\n{response}\n\n"
    "Rate the response from {low} to {high}, where {low} is very bad (wrong, off-topic "
    "or useless) and {high} is excellent (correct and helpful). "
    "Answer with a single digit."
)
DEFAULT_PREFIX = "Rating: "
TRUNCATION_MARK = " [...]"


class RatingJudge:
    """Scores responses by the probability the judge model gives each rating digit.

    Args:
        model: a bundled model name, a model folder or a hub id (see
            ``alignment.models.resolve_model``).
        rubric: an aspect name from ``RUBRICS``, a rubric sentence of your own, or a
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
                 prefix: str = DEFAULT_PREFIX, max_length: int | None = None,
                 min_digit_mass: float = 0.0, template: str = PROMPT_TEMPLATE):
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
        return RUBRICS.get(aspect, aspect)

    def _load(self, max_length: int | None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from alignment.models import resolve_model

        path = resolve_model(self.model_spec)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"  # the rating is read at the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        context = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_length = min(max_length or context, context)
        self.digit_ids = self._digit_token_ids()

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _digit_token_ids(self) -> dict[int, list[int]]:
        """Token ids that spell each rating digit right after the prefix.

        A digit counts through every single-token spelling: the token the tokenizer
        produces after the prefix, and the bare and space-led variants when they are
        single tokens (a model may prefer either).
        """
        base = self._encode(self.prefix)
        out: dict[int, list[int]] = {}
        for d in range(self.scale[0], self.scale[1] + 1):
            ids: set[int] = set()
            full = self._encode(self.prefix + str(d))
            if full[:len(base)] == base and len(full) == len(base) + 1:
                ids.add(full[-1])
            for variant in (str(d), f" {d}"):
                enc = self._encode(variant)
                if len(enc) == 1:
                    ids.add(enc[0])
            if not ids:
                raise ConfigError(f"judge model {self.model_spec}: the rating '{d}' is not a "
                                  "single token in its tokenizer; use a different judge model")
            out[d] = sorted(ids)
        every = [t for ids in out.values() for t in ids]
        if len(set(every)) != len(every):
            raise ConfigError(f"judge model {self.model_spec}: two ratings share a token")
        return out

    def render(self, aspect: str, instruction: str, response: str) -> str:
        """The judge prompt as text, up to and including the rating prefix."""
        low, high = self.scale
        user = self.template.format(rubric=self.rubric_text(aspect), instruction=instruction,
                                    response=response, low=low, high=high)
        tok = self.tokenizer
        if tok.chat_template is None:
            return f"{user}\n\n{self.prefix}"
        text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                       add_generation_prompt=True)
        return text + self.prefix

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
