"""The rating steps: ``RatingJudgeStep`` of the preference pipeline (one rubric, digits off
the judge's next-token probabilities) and ``AspectRatingStep`` of ``align generate
ultrafeedback`` / ``helpsteer`` (several aspects with rationales, in-process or from an
endpoint).

A verdict that cannot be computed or parsed is None, never a made-up number, and the
judge's raw record is kept beside it.
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations at
# run time to find the `StepInput` parameter, and pydantic resolves the step's fields.

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from distilabel.models.llms.base import LLM
from distilabel.steps import Step, StepInput
from pydantic import PrivateAttr

from alignment.rubrics import INPROCESS_ASPECT_RATING_TEMPLATE, aspect_rubric
from pipelines.judge_backends import ask
from pipelines.judge_prompts import prompt_text, rating_prompt
from pipelines.verdicts import parse_rating

if TYPE_CHECKING:
    from distilabel.typing import StepOutput


class RatingJudgeStep(Step):
    """Scores every response of a row with `alignment.judges.RatingJudge`.

    The judge reads the rating off the model's next-token probabilities for the digits of
    the scale; a verdict it cannot compute is None in `scores`, never a made-up number,
    and its raw record is always kept in `judge_raw`.

    Attributes:
        judge_model: bundled model name, model folder or hub id of the judge.
        aspects: rubric aspects (`overall`, or UltraFeedback's `instruction_following`,
            `truthfulness`, `honesty`, `helpfulness`); several give per-aspect `ratings`.
        scale: lowest and highest rating, e.g. (1, 5) or (0, 4).
        judge_batch_size: (prompt, response) pairs per forward pass.
        min_digit_mass: withhold verdicts whose digit probability mass is below this.
        num_threads: torch CPU threads for the judge's process (None: torch's default).

    Input columns:
        - instruction (`str`): the prompt the responses answer.
        - generations (`List[str]`): the candidate responses.

    Output columns:
        - scores (`List[float | None]`): one score per response.
        - judge_raw (`List[str]`): the judge's raw record per response (JSON).
        - judge_digit_mass (`List[float]`): probability mass the rating digits got.
        - ratings (`List[Dict[str, float | None]]`): per-aspect scores (several aspects only).
        - judge (`str`): the judge's name.

    Examples:
        ```python
        step = RatingJudgeStep(judge_model="smollm2")
        step.load()
        next(step.process([{"instruction": "2+2?", "generations": ["4", "7"]}]))
        ```
    """

    judge_model: str = "smollm2"
    aspects: list[str] = ["overall"]
    scale: tuple[int, int] = (1, 5)
    judge_batch_size: int = 8
    min_digit_mass: float = 0.0
    num_threads: int | None = None

    _judge: Any = PrivateAttr(None)

    @property
    def inputs(self) -> list[str]:
        return ["instruction", "generations"]

    @property
    def outputs(self) -> list[str]:
        extra = ["ratings"] if len(self.aspects) > 1 else []
        return ["scores", "judge_raw", "judge_digit_mass", "judge", *extra]

    def load(self) -> None:
        super().load()
        from alignment.judges import RatingJudge

        if self.num_threads:
            import torch

            torch.set_num_threads(self.num_threads)
        self._judge = RatingJudge(self.judge_model, rubric=self.aspects, scale=self.scale,
                                  batch_size=self.judge_batch_size,
                                  min_digit_mass=self.min_digit_mass)

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        many = len(self.aspects) > 1
        pending = [(r, g) for r, row in enumerate(inputs) for g in row["generations"]]
        scored = [(r, g) for r, g in pending if g is not None]
        verdicts = iter(self._judge.score([inputs[r]["instruction"] for r, _ in scored],
                                          [g for _, g in scored]))
        for row in inputs:
            row.update(scores=[], judge_raw=[], judge_digit_mass=[], judge=self._judge.name)
            if many:
                row["ratings"] = []
        for r, g in pending:
            # the teacher failed to answer: there is nothing to judge
            v = next(verdicts) if g is not None else {
                "score": None, "digit_mass": 0.0, "ratings": dict.fromkeys(self.aspects),
                "raw": json.dumps({"error": "no response to judge"})}
            row = inputs[r]
            row["scores"].append(v["score"])
            row["judge_raw"].append(v["raw"])
            row["judge_digit_mass"].append(v["digit_mass"])
            if many:
                row["ratings"].append(v["ratings"])
        yield inputs


def aspect_judge(model: str, aspects: dict[str, dict], scale: tuple[int, int],
                 batch_size: int):
    """A ``RatingJudge`` whose rubrics are ``aspects`` (title, rubric, anchors each)."""
    from alignment.judges import RatingJudge

    class AspectJudge(RatingJudge):
        def rubric_text(self, aspect: str) -> str:
            return aspect_rubric(aspects[aspect], scale)

    return AspectJudge(model, rubric=list(aspects), scale=scale, batch_size=batch_size,
                       template=INPROCESS_ASPECT_RATING_TEMPLATE)


class AspectRatingStep(Step):
    """Rates every response of a ranked row on several aspects, with rationales.

    In-process (no ``llm``): each aspect's rating is the expected digit under the judge
    model's next-token probabilities after "Rating: " (``RatingJudge``); with
    ``rationales`` the model then writes one line after "Rationale:". With ``llm`` (an
    endpoint, or the fake judge): one request per response and aspect, answered as
    "Rating: N / Rationale: ..." and parsed strictly; a failure is None and its text
    stays in ``judge_raw``.

    Attributes:
        aspects: aspect name -> {"title", "rubric", "anchors"}.
        scale: lowest and highest rating.
        weights: aspect -> weight of the overall score (a weighted mean); None = the
            plain mean of all aspects. The overall score is None if a weighted aspect
            has no rating.
        judge_model: in-process judge model (bundled name, folder or hub id).
        llm: endpoint judge; when set, ``judge_model`` is unused.
        judge_batch_size: prompts per in-process forward pass.
        rationales: write rationales in-process (endpoint rationales are always kept).
        concurrency: requests in flight to the endpoint.
        parse_retries: re-ask prompts whose answers did not parse.

    Input columns:
        - prompt (`str | List[Dict]`): the instruction or conversation.
        - responses (`List[str]`): the responses to rate.

    Output columns:
        - scores (`List[float | None]`): overall score per response.
        - ratings (`List[Dict[str, float | None]]`): per-aspect ratings.
        - rationales (`List[str]`): per-response rationales, one "aspect: text" line each.
        - judge_raw (`List[str]`): JSON per response: the raw answer (or digit
          probabilities) per aspect.
        - judge (`str`): the judge's name.

    Runtime parameters:
        - none beyond the LLM's own (``max_retries``, ``timeout`` of an OpenAI endpoint).

    Examples:
        ```python
        step = AspectRatingStep(aspects=ULTRAFEEDBACK, scale=(1, 5), llm=FakeLLM(judge=True))
        step.load()
        next(step.process([{"prompt": "2+2?", "responses": ["4", "5"]}]))
        ```
    """

    aspects: dict[str, dict]
    scale: tuple[int, int] = (1, 5)
    weights: dict[str, float] | None = None
    judge_model: str = "smollm2"
    llm: LLM | None = None
    judge_batch_size: int = 8
    rationales: bool = False
    concurrency: int = 8
    parse_retries: int = 0

    _judge: Any = PrivateAttr(None)

    @property
    def inputs(self) -> list[str]:
        return ["prompt", "responses"]

    @property
    def outputs(self) -> list[str]:
        return ["scores", "ratings", "rationales", "judge_raw", "judge"]

    def load(self) -> None:
        super().load()
        if self.llm is not None:
            self.llm.load()
        else:
            self._judge = aspect_judge(self.judge_model, self.aspects, tuple(self.scale),
                                       self.judge_batch_size)

    @property
    def judge_name(self) -> str:
        if self.llm is not None:
            return f"{self.llm.model_name} (endpoint, strict parse)"
        return self._judge.name

    def overall(self, ratings: dict[str, float | None]) -> float | None:
        weights = self.weights or dict.fromkeys(self.aspects, 1.0)
        parts = [ratings[a] for a in weights]
        if any(p is None for p in parts):
            return None
        return sum(w * p for w, p in zip(weights.values(), parts)) / sum(weights.values())

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        pairs = [(prompt_text(row["prompt"]), resp) for row in inputs
                 for resp in row["responses"]]
        verdicts = self._endpoint(pairs) if self.llm is not None else self._in_process(pairs)
        it = iter(verdicts)
        for row in inputs:
            mine = [next(it) for _ in row["responses"]]
            row.update(
                ratings=[v["ratings"] for v in mine],
                scores=[self.overall(v["ratings"]) for v in mine],
                rationales=["\n".join(f"{a}: {t}" for a, t in v["rationales"].items() if t)
                            for v in mine],
                judge_raw=[json.dumps(v["raw"], ensure_ascii=False) for v in mine],
                judge=self.judge_name)
        yield inputs

    def _endpoint(self, pairs: list[tuple[str, str]]) -> list[dict]:
        scale = tuple(self.scale)
        keys = [(i, a) for i in range(len(pairs)) for a in self.aspects]
        prompts = [rating_prompt(self.aspects[a], scale, *pairs[i]) for i, a in keys]
        replies = ask(self.llm, prompts, self.concurrency,
                      parsed=lambda _, t: parse_rating(t, scale)[0] is not None,
                      parse_retries=self.parse_retries)
        out = [{"ratings": {}, "rationales": {}, "raw": {}} for _ in pairs]
        for (i, a), reply in zip(keys, replies):
            rating, why = parse_rating(reply, scale)
            out[i]["ratings"][a] = None if rating is None else float(rating)
            out[i]["rationales"][a] = why
            out[i]["raw"][a] = reply
        return out

    def _in_process(self, pairs: list[tuple[str, str]]) -> list[dict]:
        judge = self._judge
        prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
        verdicts = judge.score(prompts, responses)
        if len(self.aspects) == 1:  # RatingJudge returns a flat verdict for one aspect
            (a,) = self.aspects
            verdicts = [{"ratings": {a: v["score"]}, "raw": {a: json.loads(v["raw"])}}
                        for v in verdicts]
        else:
            verdicts = [{"ratings": v["ratings"], "raw": json.loads(v["raw"])} for v in verdicts]
        out = [{"ratings": v["ratings"], "rationales": dict.fromkeys(self.aspects),
                "raw": v["raw"]} for v in verdicts]
        if self.rationales:
            keys = [(i, a) for i in range(len(pairs)) for a in self.aspects
                    if out[i]["ratings"][a] is not None]
            texts = [judge.render(a, *pairs[i]) + f"{round(out[i]['ratings'][a])}\nRationale:"
                     for i, a in keys]
            from alignment.engine import generate_ids

            tok = judge.tokenizer
            encoded = [tok(t, add_special_tokens=False).input_ids for t in texts]
            answers = generate_ids(judge.model, tok, encoded, max_new_tokens=40,
                                   batch_size=self.judge_batch_size)
            for (i, a), (gen,) in zip(keys, answers):
                line = gen.text.strip().split("\n", 1)[0].strip()  # a one-line rationale
                out[i]["rationales"][a] = line or None
        return out


def aspect_counts(rows: list[dict], aspects: Sequence[str]) -> dict:
    """Parse failures (None ratings) per aspect, and responses without an overall score."""
    ratings = [r for row in rows for r in row["ratings"]]
    return {"rows": len(rows), "responses": len(ratings),
            "parse_failures_per_aspect": {a: sum(r.get(a) is None for r in ratings)
                                          for a in aspects},
            "responses_without_score": sum(s is None for row in rows for s in row["scores"])}
