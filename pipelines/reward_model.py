"""Reward-model scores: every response scored by a sequence-classification reward model.

    ranked dataset ──► RewardModelStep (batched forward passes) ──► ranked dataset + card

Any ``AutoModelForSequenceClassification`` folder with one output works: one trained
by ``align rm``, or a published reward model. Each (prompt, response) is rendered as a
conversation with the reward model's chat template (plain "prompt\\n\\nresponse" text
when it has none) and the score is the scalar logit. There is nothing to parse, so
there are no parse failures. A pair longer than the model's context keeps its head and
its last 32 tokens (the score is read at the last token) and is counted in the card.

Run it as ``align generate reward-model IN -o OUT --model PATH`` or
``python -m pipelines.reward_model --help``.
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations
import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from distilabel.steps import Step, StepInput
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from distilabel.typing import StepOutput


class RewardScorer:
    """A sequence-classification reward model that scores (prompt, response) pairs.

    Args:
        model: model folder (or hub id) with a single-output classification head.
        batch_size: pairs per forward pass.
        max_length: token budget per pair; defaults to the model's context.
    """

    def __init__(self, model: str, batch_size: int = 8, max_length: int | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from alignment.errors import ConfigError
        from alignment.models import resolve_model

        path = resolve_model(model)
        self.name = f"reward-model:{model}"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=torch.float32).eval()
        if self.model.config.num_labels != 1:
            raise ConfigError(f"{model}: a reward model needs one output (num_labels=1), "
                              f"this one has {self.model.config.num_labels}; train one "
                              "with `align rm`")
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        context = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_length = min(max_length or context, context)
        self.batch_size = batch_size

    def render(self, prompt: str | list, response: str) -> str:
        messages = ([{"role": "user", "content": prompt}] if isinstance(prompt, str)
                    else list(prompt)) + [{"role": "assistant", "content": response}]
        if self.tokenizer.chat_template is None:
            return "\n\n".join(m["content"] for m in messages)
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def score(self, prompts: list, responses: list[str]) -> list[dict]:
        """{"score": logit, "tokens": n, "truncated": bool} per pair."""
        import torch

        enc = [self.tokenizer(self.render(p, r), add_special_tokens=False).input_ids
               for p, r in zip(prompts, responses, strict=True)]
        # the score is read at the last token, so an over-long pair loses its middle
        # rather than its end: keep the head and the last 32 tokens
        cut = [len(ids) > self.max_length for ids in enc]
        enc = [ids if len(ids) <= self.max_length else
               ids[:self.max_length - 32] + ids[-32:] for ids in enc]
        out: list[dict] = [{} for _ in enc]
        # the head pools at the last token that is not the pad id; with right padding
        # that is the same token batched or alone (also when pad = eos), as in training
        order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [enc[i] for i in rows]},
                                       return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**batch).logits[:, 0].float()
            for j, i in enumerate(rows):
                out[i] = {"score": float(logits[j]), "tokens": len(enc[i]),
                          "truncated": cut[i]}
        return out


class RewardModelStep(Step):
    """Scores each response of a ranked row with a reward model.

    Attributes:
        reward_model: reward model folder (or hub id).
        rm_batch_size: pairs per forward pass.

    Input columns:
        - prompt (`str | List[Dict]`): the instruction or conversation.
        - responses (`List[str]`): the responses to score.

    Output columns:
        - scores (`List[float]`): the reward model's logit per response.
        - judge_raw (`List[str]`): JSON per response: score, tokens, truncated.
        - judge (`str`): the reward model's name.

    Examples:
        ```python
        step = RewardModelStep(reward_model="out/rm")
        step.load()
        next(step.process([{"prompt": "2+2?", "responses": ["4", "5"]}]))
        ```
    """

    reward_model: str
    rm_batch_size: int = 8

    _scorer: Any = PrivateAttr(None)

    @property
    def inputs(self) -> list[str]:
        return ["prompt", "responses"]

    @property
    def outputs(self) -> list[str]:
        return ["scores", "judge_raw", "judge"]

    def load(self) -> None:
        super().load()
        self._scorer = RewardScorer(self.reward_model, self.rm_batch_size)

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        flat = [(row["prompt"], resp) for row in inputs for resp in row["responses"]]
        verdicts = iter(self._scorer.score([p for p, _ in flat], [r for _, r in flat]))
        for row in inputs:
            mine = [next(verdicts) for _ in row["responses"]]
            row.update(scores=[v["score"] for v in mine], judge=self._scorer.name,
                       judge_raw=[json.dumps(v) for v in mine])
        yield inputs


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="align generate reward-model", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="ranked dataset to score")
    ap.add_argument("--output", "-o", required=True, help="ranked dataset to write")
    ap.add_argument("--model", required=True,
                    help="reward model folder (e.g. the output of `align rm`) or hub id")
    ap.add_argument("--batch-size", type=int, default=8,
                    help="pairs per forward pass (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    return ap


def run(args: argparse.Namespace) -> tuple[str, dict]:
    from pipelines.judging import ROWS_PER_BATCH, read_input, run_step, write_output
    from pipelines.verdicts import ranks_from_scores

    keep = ("id", "prompt", "responses", "models", "source")
    rows = [{k: r[k] for k in keep if k in r} for r in read_input(args.input, args.limit)]
    out, seconds = run_step("reward-model", rows, lambda: RewardModelStep(
        name="reward_model", reward_model=args.model, rm_batch_size=args.batch_size,
        input_batch_size=ROWS_PER_BATCH))
    for row in out:
        row["ranks"] = ranks_from_scores(row["scores"])
    n = sum(len(r["responses"]) for r in out)
    info = {"judge": {"reward_model": args.model, "name": out[0]["judge"] if out else None,
                      "method": "scalar logit of the sequence-classification head on the "
                                "chat-formatted (prompt, response)",
                      "batch_size": args.batch_size},
            "counts": {"rows": len(out), "responses": n,
                       "truncated": sum(json.loads(x)["truncated"] for r in out
                                        for x in r["judge_raw"])},
            "input": args.input, "seconds": round(seconds, 1),
            "responses_per_second": round(n / seconds, 3) if seconds else None}
    path = write_output(out, args.output, "align reward-model scores", info)
    return path, info


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path, info = run(args)
    c = info["counts"]
    print(f"wrote {c['rows']} rows ({c['responses']} responses scored) to {path}; "
          f"{info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
