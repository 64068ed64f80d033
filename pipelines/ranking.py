"""k-wise ranking (Nectar-style): the judge sees all k responses of a row at once,
labelled A, B, C, ..., and ranks them from best to worst.

    ranked dataset ──► KWiseRankingStep (one judgement per row) ──► ranked dataset + card

The order shown is a seeded shuffle of the row's responses (a judge that favours early
positions then favours no response in particular), and the ranking is mapped back to
the original order. ``scores`` are ``k + 1 - rank`` (the rule ``alignment.data`` uses
for Nectar), so the usual pair building applies.

With ``--base-url`` the endpoint answers "Ranking: C > A > B"; the answer must name
every label exactly once, otherwise the row keeps the raw text, gets null ranks and
scores, and is counted as a parse failure. In-process there are two methods, and
neither is a real k-wise judgement:

- ``--method rating`` (default): each response gets the overall rating-digit
  expectation (``RatingJudge``), one response per prompt, and the ranking sorts them.
  Order-free, but the judge never compares responses with each other.
- ``--method first-choice``: one prompt shows all k responses and ends "Ranking: ";
  the ranking sorts the labels by the probability that the judge names each one
  first. This is a comparison, but only of the first choice, and small models give
  most of that probability to "A" whatever it labels (see the card's mean first-choice
  probability per shown position).

Run it as ``align generate ranking IN -o OUT`` or ``python -m pipelines.ranking --help``.
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations
import argparse
import json
import random
import sys
from typing import TYPE_CHECKING, Any

from distilabel.models.llms.base import LLM
from distilabel.steps import Step, StepInput
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from distilabel.typing import StepOutput

METHODS = ("rating", "first-choice")


def shown_order(row_id: str, n: int, seed: int) -> list[int]:
    """Which original response is shown as A, B, ...: a shuffle seeded by row and seed."""
    order = list(range(n))
    random.Random(f"{seed}:{row_id}").shuffle(order)
    return order


class KWiseRankingStep(Step):
    """Ranks all responses of a row in one judgement.

    Attributes:
        llm: endpoint judge (strict parse); None = in-process with ``judge_model``.
        judge_model: in-process judge (bundled name, folder or hub id).
        method: in-process method, "rating" or "first-choice" (see the module doc).
        seed: seed of the order the responses are shown in.
        judge_batch_size: prompts per in-process forward pass.
        concurrency: requests in flight to the endpoint.
        parse_retries: re-ask rows whose ranking did not parse.

    Input columns:
        - id (`str`): row id (seeds the shown order).
        - prompt (`str | List[Dict]`): the instruction or conversation.
        - responses (`List[str]`): the k responses.

    Output columns:
        - ranks (`List[int | None]`): 1 = best, in the original response order.
        - scores (`List[float | None]`): k + 1 - rank (or the in-process score used).
        - shown_order (`List[int]`): original index of the response shown as A, B, ...
        - judge_raw (`List[str]`): JSON per response: its label and the raw answer.
        - judge (`str`): the judge's name.

    Examples:
        ```python
        step = KWiseRankingStep(llm=FakeLLM(judge=True))
        step.load()
        next(step.process([{"id": "x", "prompt": "2+2?", "responses": ["4", "5", "22"]}]))
        ```
    """

    llm: LLM | None = None
    judge_model: str = "smollm2"
    method: str = "rating"
    seed: int = 0
    judge_batch_size: int = 8
    concurrency: int = 8
    parse_retries: int = 0

    _judge: Any = PrivateAttr(None)

    @property
    def inputs(self) -> list[str]:
        return ["id", "prompt", "responses"]

    @property
    def outputs(self) -> list[str]:
        return ["ranks", "scores", "shown_order", "judge_raw", "judge"]

    def load(self) -> None:
        super().load()
        if self.llm is not None:
            self.llm.load()
            return
        from alignment.judges import RatingJudge

        self._judge = RatingJudge(self.judge_model, batch_size=self.judge_batch_size)

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        from pipelines.judge_prompts import prompt_text

        jobs = []
        for row in inputs:
            order = shown_order(row["id"], len(row["responses"]), self.seed)
            jobs.append((prompt_text(row["prompt"]), [row["responses"][i] for i in order],
                         order))
        if self.llm is not None:
            name, results = f"{self.llm.model_name} (endpoint, strict parse)", self._endpoint(jobs)
        elif self.method == "rating":
            name, results = f"{self._judge.name} (per-response rating)", self._by_rating(jobs)
        else:
            name, results = f"{self._judge.name} (first-choice probability)", \
                self._first_choice(jobs)
        for row, (_, _, order), (scores, ranks, raw) in zip(inputs, jobs, results):
            row.update(scores=scores, ranks=ranks, shown_order=order, judge=name,
                       judge_raw=raw)
        yield inputs

    def _endpoint(self, jobs: list) -> list:
        from alignment.rubrics import LABELS
        from pipelines.judge_backends import ask
        from pipelines.judge_prompts import ranking_prompt
        from pipelines.verdicts import parse_ranking

        prompts = [ranking_prompt(instr, shown) for instr, shown, _ in jobs]
        replies = ask(self.llm, prompts, self.concurrency, parse_retries=self.parse_retries,
                      parsed=lambda i, t: parse_ranking(t, len(jobs[i][1])) is not None)
        out = []
        for (_, shown, order), reply in zip(jobs, replies):
            k = len(shown)
            best_first = parse_ranking(reply, k)
            ranks: list[int | None] = [None] * k
            if best_first is not None:
                for place, shown_idx in enumerate(best_first):
                    ranks[order[shown_idx]] = place + 1
            scores = [None if r is None else float(k + 1 - r) for r in ranks]
            raw = [json.dumps({"label": LABELS[order.index(i)], "answer": reply},
                              ensure_ascii=False) for i in range(k)]
            out.append((scores, ranks, raw))
        return out

    def _by_rating(self, jobs: list) -> list:
        from pipelines.verdicts import ranks_from_scores

        flat = [(instr, resp) for instr, shown, order in jobs
                for resp in _original(shown, order)]
        verdicts = iter(self._judge.score([p for p, _ in flat], [r for _, r in flat]))
        out = []
        for _, shown, _ in jobs:
            mine = [next(verdicts) for _ in shown]
            scores = [v["score"] for v in mine]
            out.append((scores, ranks_from_scores(scores), [v["raw"] for v in mine]))
        return out

    def _first_choice(self, jobs: list) -> list:
        from alignment.judges import judge_prompt, label_token_ids
        from alignment.rubrics import LABELS, RANKING_PREFIX
        from pipelines.judge_backends import fit_responses, next_token_probs
        from pipelines.judge_prompts import ranking_prompt
        from pipelines.verdicts import ranks_from_scores

        judge, prefix = self._judge, RANKING_PREFIX
        tok = judge.tokenizer
        texts, cut = [], []
        for instr, shown, _ in jobs:
            def build(rs, instr=instr):
                return judge_prompt(tok, ranking_prompt(instr, rs), prefix)
            fitted, was_cut = fit_responses(tok, build, shown, judge.max_length)
            texts.append(build(fitted))
            cut.append(was_cut)
        k_max = max(len(s) for _, s, _ in jobs)
        ids = label_token_ids(tok, prefix, LABELS[:k_max], judge.model_spec)
        probs = next_token_probs(judge.model, tok, texts, ids, self.judge_batch_size)
        out = []
        for (_, shown, order), p, was_cut in zip(jobs, probs, cut):
            k = len(shown)
            mass = sum(p[LABELS[i]] for i in range(k))
            by_shown = [p[LABELS[i]] / mass if mass > 0 else None for i in range(k)]
            scores = _original(by_shown, order)
            raw = [json.dumps({"label": LABELS[order.index(i)], "first_choice_prob":
                               None if scores[i] is None else round(scores[i], 4),
                               "label_mass": round(mass, 4), "truncated": was_cut})
                   for i in range(k)]
            out.append((scores, ranks_from_scores(scores), raw))
        return out


def _original(shown: list, order: list[int]) -> list:
    """Items listed in shown order, put back in the original response order."""
    out = [None] * len(order)
    for pos, i in enumerate(order):
        out[i] = shown[pos]
    return out


def parser() -> argparse.ArgumentParser:
    from pipelines.judge_backends import judge_args

    ap = argparse.ArgumentParser(prog="align generate ranking", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    judge_args(ap)
    ap.add_argument("--method", choices=METHODS, default="rating",
                    help="in-process ranking method (default: %(default)s); an endpoint "
                         "always ranks all responses in one answer")
    ap.add_argument("--max-k", type=int, default=7,
                    help="rank at most this many responses per row; rows with more keep "
                         "their first max-k (default: %(default)s, as Nectar)")
    return ap


def run(args: argparse.Namespace) -> tuple[str, dict]:
    from alignment.errors import ConfigError
    from alignment.rubrics import LABELS, RANKING_TEMPLATE
    from pipelines.judge_backends import backend, endpoint_llm, judge_info
    from pipelines.judging import ROWS_PER_BATCH, read_input, run_step, write_output

    if not 2 <= args.max_k <= len(LABELS):
        raise ConfigError(f"--max-k {args.max_k}: expected 2..{len(LABELS)}")
    rows, truncated = [], 0
    for r in read_input(args.input, args.limit):
        k = min(len(r["responses"]), args.max_k)
        truncated += len(r["responses"]) > k
        rows.append({"id": r["id"], "prompt": r["prompt"], "responses": r["responses"][:k],
                     "models": r["models"][:k],
                     **({"source": r["source"]} if "source" in r else {})})
    endpoint = backend(args) == "endpoint"
    llm = endpoint_llm(args) if endpoint else None
    out, seconds = run_step("ranking", rows, lambda: KWiseRankingStep(
        name="kwise_ranking", llm=llm, judge_model=args.model, method=args.method,
        seed=args.seed, judge_batch_size=args.batch_size, concurrency=args.concurrency,
        parse_retries=args.parse_retries, input_batch_size=ROWS_PER_BATCH))
    failures = sum(all(r is None for r in row["ranks"]) for row in out)
    # mean probability each shown position got as first choice: the position bias
    by_position: dict[int, list[float]] = {}
    for row in out:
        for i, raw in enumerate(row["judge_raw"]):
            p = json.loads(raw).get("first_choice_prob")
            if p is not None:
                by_position.setdefault(row["shown_order"].index(i), []).append(p)
    method = ("strict parse of 'Ranking: C > A > B'" if endpoint else
              {"rating": "per-response expected rating (RatingJudge), sorted",
               "first-choice": "probability of each label as the first token after "
                               "'Ranking: ', sorted"}[args.method])
    info = {
        "judge": {**judge_info(args), "name": out[0]["judge"] if out else None,
                  "method": method},
        "prompt_templates": {"ranking": RANKING_TEMPLATE},
        "shown_order": f"seeded shuffle per row (seed {args.seed}); see `shown_order`",
        "counts": {"rows": len(out), "responses": sum(len(r["responses"]) for r in out),
                   "parse_failures": failures, "rows_cut_to_max_k": truncated},
        "input": args.input, "seconds": round(seconds, 1),
    }
    if by_position:
        info["mean_first_choice_prob_by_shown_position"] = {
            LABELS[p]: round(sum(v) / len(v), 4) for p, v in sorted(by_position.items())}
    path = write_output(out, args.output, "align k-wise ranking", info)
    return path, info


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path, info = run(args)
    c = info["counts"]
    print(f"wrote {c['rows']} ranked rows to {path}; {c['parse_failures']} rankings did "
          f"not parse; {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
