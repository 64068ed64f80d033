"""What the AI-feedback pipelines share: rendering judge prompts (their texts live in
``alignment.rubrics``) and their strict parsers, the in-process probability readers,
asking an endpoint, running a judging step, and the rating steps (``RatingJudgeStep``
of the preference pipeline, ``AspectRatingStep`` of ultrafeedback and helpsteer).

Two ways to get a verdict, one rule for failures:

- in-process (a model folder or bundled name): read the verdict off the next-token
  distribution (rating digits, response labels "A".."G"), like ``RatingJudge``. A small
  model rarely writes a parseable answer but still ranks the candidate tokens.
- an endpoint (``--base-url``, any OpenAI-compatible server): ask for a fixed output
  format and parse it strictly. Text that does not match keeps its raw form, becomes
  ``None`` and is counted in the card; it is never coerced into a number.
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations at
# run time to find the `StepInput` parameter, and pydantic resolves the step's fields.

import argparse
import json
import logging
import re
import time
from collections.abc import Sequence
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distilabel.models.llms.base import LLM
from distilabel.steps import Step, StepInput
from pydantic import PrivateAttr

from alignment.rubrics import (ASPECT_RATING_TEMPLATE, INPROCESS_ASPECT_RATING_TEMPLATE, LABELS,
                               PAIRWISE_TEMPLATE, RANKING_TEMPLATE, aspect_rubric)

if TYPE_CHECKING:
    from distilabel.typing import StepOutput

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ prompts

def prompt_text(prompt: str | list) -> str:
    """A ranked row's prompt as text: conversations become "role: content" lines."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def rating_prompt(aspect: dict, scale: tuple[int, int], instruction: str, response: str) -> str:
    """The endpoint prompt for one aspect of one response (``aspect``: title, rubric,
    anchors)."""
    low, high = scale
    return ASPECT_RATING_TEMPLATE.format(title=aspect["title"], rubric=aspect["rubric"],
                                         low=low, high=high, anchors=aspect["anchors"],
                                         instruction=instruction, response=response)


def ranking_prompt(instruction: str, responses: Sequence[str]) -> str:
    k = len(responses)
    shown = "\n\n".join(f"## Response {LABELS[i]}\n{r}" for i, r in enumerate(responses))
    example = '"' + " > ".join(LABELS[i] for i in reversed(range(k))) + '"'
    return RANKING_TEMPLATE.format(k=k, instruction=instruction, responses=shown,
                                   example=example)


def pairwise_prompt(instruction: str, a: str, b: str) -> str:
    return PAIRWISE_TEMPLATE.format(instruction=instruction, response_a=a, response_b=b)


# ------------------------------------------------------------------ strict parsers

def _json_object(text: str) -> dict | None:
    """The text as one JSON object (an optional ```json fence allowed), else None."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fence:
        body = fence.group(1)
    if not body.startswith("{"):
        return None
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


_RATING_LINE = re.compile(r"Rating:[ \t]*(\d+)[ \t]*", re.IGNORECASE)
_RATIONALE = re.compile(r"Rationale:[ \t]*(.*)", re.IGNORECASE | re.DOTALL)


def parse_rating(text: str | None, scale: tuple[int, int]) -> tuple[int | None, str | None]:
    """(rating, rationale) from ``Rating: N`` [``Rationale: ...``] or a JSON object
    ``{"rating": N, "rationale": "..."}``; (None, None) for anything else.

    Strict on purpose: the first line must be the rating, a whole number inside the
    scale, and whatever follows must be the rationale. "I'd say 4" or "Rating: 4/5" or
    a rating of 7 on a 1..5 scale is a parse failure, not a 4 or a 5.
    """
    if not text:
        return None, None
    low, high = scale
    obj = _json_object(text)
    if obj is not None:
        keys = {k.lower(): v for k, v in obj.items()}
        value, why = keys.get("rating"), keys.get("rationale")
        if set(keys) - {"rating", "rationale"} or isinstance(value, bool) \
                or not isinstance(value, int) or not low <= value <= high:
            return None, None
        return value, why if isinstance(why, str) else None
    head, _, rest = text.strip().partition("\n")
    m = _RATING_LINE.fullmatch(head.strip())
    if not m or not low <= int(m.group(1)) <= high:
        return None, None
    rest = rest.strip()
    if not rest:
        return int(m.group(1)), None
    why = _RATIONALE.fullmatch(rest)
    return (int(m.group(1)), why.group(1).strip()) if why else (None, None)


def parse_ranking(text: str | None, k: int) -> list[int] | None:
    """Indices of the k responses from best to worst, from ``Ranking: C > A > B`` (also
    ``[C] > [A] > [B]``, commas, or JSON ``{"ranking": ["C", "A", "B"]}``); None unless
    the answer names every label exactly once and nothing else."""
    if not text:
        return None
    labels = LABELS[:k]
    obj = _json_object(text)
    if obj is not None:
        value = obj.get("ranking")
        if set(obj) != {"ranking"} or not isinstance(value, list) \
                or not all(isinstance(v, str) for v in value):
            return None
        items = [v.strip().strip("[]").strip() for v in value]
    else:
        line = text.strip()
        if "\n" in line:
            return None
        line = re.sub(r"^Ranking:\s*", "", line, flags=re.IGNORECASE)
        items = [p.strip().strip("[]").strip() for p in re.split(r">|,", line)]
    if sorted(items) != sorted(labels):
        return None
    return [labels.index(x) for x in items]


def parse_verdict(text: str | None) -> str | None:
    """"A" or "B" from ``Verdict: A`` (also a bare ``A``, ``[[A]]``, or JSON
    ``{"verdict": "A"}``); None for anything else, ties and explanations included."""
    if not text:
        return None
    obj = _json_object(text)
    if obj is not None:
        value = obj.get("verdict")
        return value if set(obj) == {"verdict"} and value in ("A", "B") else None
    line = text.strip()
    line = re.sub(r"^Verdict:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("[]").strip().rstrip(".")
    return line if line in ("A", "B") else None


# ------------------------------------------------------------------ in-process readers

def next_token_probs(model: Any, tokenizer: Any, texts: Sequence[str],
                     token_ids: dict[str, list[int]], batch_size: int = 8
                     ) -> list[dict[str, float]]:
    """For each text, the probability of each key's tokens as the very next token
    (summed over a key's spellings, not renormalised)."""
    from alignment.judges import next_token_distributions

    encoded = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    return [{k: float(probs[ids].sum()) for k, ids in token_ids.items()}
            for probs in next_token_distributions(model, tokenizer, encoded, batch_size,
                                                  desc="judge")]


def generate_greedy(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int,
                    batch_size: int = 8) -> list[str]:
    """Greedy continuations of raw texts, cut at the first newline (short rationales)."""
    import torch

    encoded = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    out = [""] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt")
        with torch.inference_mode():
            gen = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
        for j, i in enumerate(rows):
            text = tokenizer.decode(gen[j, batch["input_ids"].shape[1]:],
                                    skip_special_tokens=True)
            out[i] = text.strip().split("\n", 1)[0].strip()
    return out


def fit_responses(tokenizer: Any, build, responses: Sequence[str], max_length: int,
                  mark: str = " [...]") -> tuple[list[str], bool]:
    """Shorten every response evenly until ``build(responses)`` fits ``max_length``
    tokens; returns the responses shown and whether any was cut."""
    def length(rs: Sequence[str]) -> int:
        return len(tokenizer(build(rs), add_special_tokens=False).input_ids)

    shown, cut = list(responses), False
    ids = [tokenizer(r, add_special_tokens=False).input_ids for r in responses]
    budget = max(len(i) for i in ids) if ids else 0
    while length(shown) > max_length and budget > 8:
        budget = int(budget * 0.8)
        shown = [r if len(i) <= budget else tokenizer.decode(i[:budget]) + mark
                 for r, i in zip(responses, ids)]
        cut = True
    return shown, cut


# ------------------------------------------------------------------ endpoints

def ask(llm: LLM, prompts: Sequence[str], concurrency: int = 8,
        parsed: Callable[[int, str | None], bool] | None = None,
        parse_retries: int = 0) -> list[str | None]:
    """One reply per user prompt from ``llm``, ``concurrency`` requests in flight.

    Transient HTTP errors (429, 5xx, timeouts) are retried by the openai client itself
    (``max_retries`` with exponential backoff). ``parse_retries`` re-asks only the
    prompts whose reply ``parsed(index, text)`` rejects: useful with sampling, pointless at
    temperature 0 where the same prompt gets the same reply.
    """
    gen = dict(getattr(llm, "generation_kwargs", None) or {})
    replies: list[str | None] = [None] * len(prompts)
    todo = list(range(len(prompts)))
    for attempt in range(parse_retries + 1):
        for start in range(0, len(todo), concurrency):
            chunk = todo[start:start + concurrency]
            try:
                outs = llm.generate_outputs(
                    inputs=[[{"role": "user", "content": prompts[i]}] for i in chunk],
                    num_generations=1, **gen)
            except Exception as e:  # retries exhausted: these prompts get no verdict
                log.warning("judge requests failed after the client's retries (%s: %s); "
                            "%d prompts get no verdict", type(e).__name__, e, len(chunk))
                outs = [{"generations": [None]} for _ in chunk]
            for i, o in zip(chunk, outs):
                replies[i] = (o["generations"] or [None])[0]
        if parsed is None:
            break
        todo = [i for i in todo if not parsed(i, replies[i])]
        if not todo:
            break
    return replies


def endpoint_llm(args: argparse.Namespace) -> LLM:
    """The judge LLM for ``--base-url`` (or the fake judge for ``--dry-run``)."""
    if args.dry_run:
        from pipelines.fake import FAKE_JUDGE_NAME, FakeLLM

        return FakeLLM(name=FAKE_JUDGE_NAME, judge=True)
    from pipelines.llms import make_llm

    llm = make_llm(args.model, base_url=args.base_url, api_key_env=args.api_key_env,
                   max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   do_sample=args.temperature > 0, seed=args.seed)
    # make_llm leaves the openai client's retry policy at distilabel's defaults
    llm.max_retries, llm.timeout = args.max_retries, args.timeout
    return llm


def judge_args(ap: argparse.ArgumentParser, *, default_model: str = "smollm2") -> None:
    """Options every judge pipeline takes."""
    ap.add_argument("input", help="ranked dataset to judge (.jsonl, .parquet, a folder, or "
                                  "any ranked format align reads)")
    ap.add_argument("--output", "-o", required=True,
                    help="ranked dataset to write; the card goes beside it")
    g = ap.add_argument_group("judge")
    g.add_argument("--model", default=default_model,
                   help="judge: bundled name, model folder or hub id (in-process), or the "
                        "served model name with --base-url (default: %(default)s)")
    g.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint (vLLM, TGI, llama.cpp, transformers, "
                        "OpenAI, python -m pipelines.server): strict-parse its answers")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the endpoint's key (never printed; "
                        "a local server needs none)")
    g.add_argument("--concurrency", type=int, default=8,
                   help="requests in flight to the endpoint (default: %(default)s)")
    g.add_argument("--max-retries", type=int, default=6,
                   help="retries of rate-limited or failed requests, with exponential "
                        "backoff (default: %(default)s)")
    g.add_argument("--timeout", type=float, default=120.0,
                   help="seconds per request (default: %(default)s)")
    g.add_argument("--parse-retries", type=int, default=0,
                   help="re-ask prompts whose answer did not parse (useful only with "
                        "--temperature > 0; default: %(default)s)")
    g.add_argument("--temperature", type=float, default=0.0,
                   help="endpoint sampling temperature (default: %(default)s, greedy)")
    g.add_argument("--max-new-tokens", type=int, default=96,
                   help="cap on the endpoint's answer length (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=8,
                   help="prompts per forward pass of an in-process judge (default: "
                        "%(default)s)")
    g.add_argument("--dry-run", action="store_true",
                   help="use a deterministic fake judge that answers in the expected "
                        "formats: shows the output's shape without a model")
    ap.add_argument("--limit", type=int, default=None, help="judge only the first N rows")
    ap.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")


def backend(args: argparse.Namespace) -> str:
    return "endpoint" if (args.base_url or args.dry_run) else "in-process"


def judge_info(args: argparse.Namespace) -> dict:
    """The card's record of the judge; the key itself is never part of it."""
    from pipelines.fake import FAKE_JUDGE_NAME

    info = {"model": FAKE_JUDGE_NAME if args.dry_run else args.model,
            "backend": backend(args), "base_url": args.base_url}
    if backend(args) == "endpoint":
        info.update(api_key_env=args.api_key_env, concurrency=args.concurrency,
                    max_retries=args.max_retries, timeout=args.timeout,
                    parse_retries=args.parse_retries, temperature=args.temperature,
                    max_new_tokens=args.max_new_tokens)
    else:
        info["batch_size"] = args.batch_size
    return info


# ------------------------------------------------------------------ running

def read_input(path: str, limit: int | None = None) -> list[dict]:
    from alignment.data import load_ranked

    rows = load_ranked(path)
    return rows[:limit] if limit else rows


def run_step(name: str, rows: list[dict], step_factory, fresh: bool = False
             ) -> tuple[list[dict], float]:
    """Run ``load >> step >> journal`` as a distilabel pipeline; returns the rows (input
    order) and the seconds the pipeline took.

    Judging is often the most expensive stage, so it finishes through the same journal
    as the generation pipelines (``pipelines.runner.run``): a killed judge run, started
    again with the same rows and judge, judges only the rows not yet journalled.
    """
    from pipelines import runner

    # the journal keys rows by a unique id; ranked rows may share one (or lack it)
    data = [{**r, "id": f"{i}:{r.get('id')}", "_source_id": r.get("id"), "order": [i]}
            for i, r in enumerate(rows)]
    columns = list(dict.fromkeys(k for r in data for k in r))

    def build(part: list[dict]):
        from distilabel.pipeline import Pipeline

        with Pipeline(name=f"align-{name}", cache_dir=runner.cache_root()) as pipeline:
            step = step_factory()
            outputs = list(step.outputs)
            journal = runner.Journal(columns=columns + [c for c in outputs if c not in columns],
                                     input_batch_size=64)
            runner.load_rows(part, 64) >> step >> journal
        return pipeline, journal
    start = time.time()
    out = runner.run(build, data, fresh=fresh)
    seconds = time.time() - start
    restored = []
    for r in out:
        row = {k: v for k, v in r.items() if k not in ("_source_id",)}
        row["id"] = r["_source_id"]
        if row["id"] is None:
            del row["id"]
        restored.append(row)
    return restored, seconds


def write_output(rows: list[dict], output: str, title: str, info: dict) -> str:
    from alignment.data import validate_rows, write_card, write_rows

    validate_rows(rows, "ranked", output)
    path = write_rows(rows, output)
    write_card(path, title, {"rows": len(rows), **info})
    return str(path)


def ranks_from_scores(scores: Sequence[float | None]) -> list[int | None]:
    """1 = best; responses without a score get no rank; ties share the better rank."""
    known = sorted({s for s in scores if s is not None}, reverse=True)
    better = {s: sum(1 for t in scores if t is not None and t > s) for s in known}
    return [None if s is None else better[s] + 1 for s in scores]


# ------------------------------------------------------------------ the rating judge

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


# ------------------------------------------------------------------ aspect ratings

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
            lines = generate_greedy(judge.model, judge.tokenizer, texts, max_new_tokens=40,
                                    batch_size=self.judge_batch_size)
            for (i, a), line in zip(keys, lines):
                out[i]["rationales"][a] = line or None
        return out


def aspect_counts(rows: list[dict], aspects: Sequence[str]) -> dict:
    """Parse failures (None ratings) per aspect, and responses without an overall score."""
    ratings = [r for row in rows for r in row["ratings"]]
    return {"rows": len(rows), "responses": len(ratings),
            "parse_failures_per_aspect": {a: sum(r.get(a) is None for r in ratings)
                                          for a in aspects},
            "responses_without_score": sum(s is None for row in rows for s in row["scores"])}
