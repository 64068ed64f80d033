"""Pairwise judge, asked in both orders to cancel position bias.

    ranked dataset ──► PairwiseJudgeStep (every pair, A/B then B/A) ──► ranked dataset + card

Every pair of a row's responses is shown twice, once as (A, B) and once swapped. A
judge with no position bias gives the same winner both times; the fraction of pairs
where it does is the **position-consistency rate**, printed and written to the card.

- In-process (``alignment.judges.PairwiseJudge``, given the endpoint's prompt): the
  assistant turn starts "Verdict: " and the verdict is read off the probabilities of
  the tokens "A" and "B" (renormalised over the two). The pair's
  score is the mean, over both orders, of the probability each response wins.
- Endpoint (``--base-url``): the answer must be "Verdict: A" or "Verdict: B" (or a bare
  letter, or JSON ``{"verdict": "A"}``); anything else is a parse failure kept raw.
  The pair's score is the share of parsed orders each response won.

A response's score is its mean pair score over all its pairs (a win rate in [0, 1]),
``null`` when none of its pairs got a verdict; ``ranks`` follow the scores. Each
comparison is kept in ``comparisons``.

Run it as ``align generate pairwise IN -o OUT`` or ``python -m pipelines.pairwise --help``.
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations
import argparse
import json
import sys
from itertools import combinations
from typing import TYPE_CHECKING, Any

from distilabel.models.llms.base import LLM
from distilabel.steps import Step, StepInput
from pydantic import PrivateAttr

from alignment.rubrics import PAIRWISE_TEMPLATE, VERDICT_PREFIX

if TYPE_CHECKING:
    from distilabel.typing import StepOutput



class PairwiseJudgeStep(Step):
    """Judges every pair of a row's responses in both orders.

    Attributes:
        llm: endpoint judge (strict parse); None = in-process with ``judge_model``.
        judge_model: in-process judge (bundled name, folder or hub id).
        judge_batch_size: prompts per in-process forward pass.
        concurrency: requests in flight to the endpoint.
        parse_retries: re-ask comparisons whose verdict did not parse.

    Input columns:
        - prompt (`str | List[Dict]`): the instruction or conversation.
        - responses (`List[str]`): the responses to compare.

    Output columns:
        - scores (`List[float | None]`): win rate per response.
        - ranks (`List[int | None]`): 1 = best, from the scores.
        - comparisons (`List[Dict]`): per pair and order: `first`, `second` (response
          indices, as shown A and B), `winner` (index or None), `p_first`
          (in-process probability that A wins, or None), `raw` (answer text or JSON).
        - judge_raw (`List[str]`): JSON per response: the comparisons it took part in.
        - judge (`str`): the judge's name.

    Examples:
        ```python
        step = PairwiseJudgeStep(llm=FakeLLM(judge=True))
        step.load()
        next(step.process([{"prompt": "2+2?", "responses": ["4", "5"]}]))
        ```
    """

    llm: LLM | None = None
    judge_model: str = "smollm2"
    judge_batch_size: int = 8
    concurrency: int = 8
    parse_retries: int = 0

    _model: Any = PrivateAttr(None)

    @property
    def inputs(self) -> list[str]:
        return ["prompt", "responses"]

    @property
    def outputs(self) -> list[str]:
        return ["scores", "ranks", "comparisons", "judge_raw", "judge"]

    def load(self) -> None:
        super().load()
        if self.llm is not None:
            self.llm.load()
            return
        from alignment.judges import PairwiseJudge

        # the endpoint's prompt, so both backends are asked the same question
        self._model = PairwiseJudge(self.judge_model, batch_size=self.judge_batch_size,
                                    prefix=VERDICT_PREFIX, template=PAIRWISE_TEMPLATE)

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        from pipelines.judge_prompts import prompt_text
        from pipelines.verdicts import ranks_from_scores

        asks = []  # (row, first, second, instruction)
        for r, row in enumerate(inputs):
            instr = prompt_text(row["prompt"])
            for i, j in combinations(range(len(row["responses"])), 2):
                asks += [(r, i, j, instr), (r, j, i, instr)]
        if self.llm is not None:
            name, verdicts = f"{self.llm.model_name} (endpoint, strict parse)", \
                self._endpoint(inputs, asks)
        else:
            name, verdicts = f"{self._model.name} (A/B token probabilities)", \
                self._in_process(inputs, asks)
        for row in inputs:
            row["comparisons"] = []
        for (r, i, j, _), (winner, p_first, raw) in zip(asks, verdicts):
            inputs[r]["comparisons"].append({"first": i, "second": j, "winner": winner,
                                             "p_first": p_first, "raw": raw})
        for row in inputs:
            scores = pair_scores(len(row["responses"]), row["comparisons"])
            row.update(scores=scores, ranks=ranks_from_scores(scores), judge=name,
                       judge_raw=[json.dumps([c for c in row["comparisons"]
                                              if k in (c["first"], c["second"])],
                                             ensure_ascii=False)
                                  for k in range(len(row["responses"]))])
        yield inputs

    def _endpoint(self, inputs: list, asks: list) -> list:
        from pipelines.judge_backends import ask
        from pipelines.judge_prompts import pairwise_prompt
        from pipelines.verdicts import parse_verdict

        prompts = [pairwise_prompt(instr, inputs[r]["responses"][i], inputs[r]["responses"][j])
                   for r, i, j, instr in asks]
        replies = ask(self.llm, prompts, self.concurrency, parse_retries=self.parse_retries,
                      parsed=lambda _, t: parse_verdict(t) is not None)
        out = []
        for (_, i, j, _), reply in zip(asks, replies):
            v = parse_verdict(reply)
            out.append((None if v is None else (i if v == "A" else j), None, reply))
        return out

    def _in_process(self, inputs: list, asks: list) -> list:
        # asks come in twos, (i, j) then (j, i); PairwiseJudge asks both orders itself
        pairs = asks[::2]
        verdicts = self._model.compare([instr for *_, instr in pairs],
                                       [inputs[r]["responses"][i] for r, i, _, _ in pairs],
                                       [inputs[r]["responses"][j] for r, _, j, _ in pairs])
        out = []
        for (_, i, j, _), v in zip(pairs, verdicts):
            # the probability that the response shown first wins, in each order
            for first, second, p in ((i, j, v["p_a_first"]),
                                     (j, i, None if v["p_a_second"] is None
                                      else 1 - v["p_a_second"])):
                winner = None if p is None or p == 0.5 else first if p > 0.5 else second
                out.append((winner, p, v["raw"]))
        return out


def pair_scores(n: int, comparisons: list[dict]) -> list[float | None]:
    """Each response's mean score over its pairs; a pair's score for a response is the
    mean over orders of its win probability (in-process) or win share (parsed verdicts)."""
    per_pair: dict[tuple[int, int], list[float]] = {}
    for c in comparisons:
        a, b = c["first"], c["second"]
        key = (min(a, b), max(a, b))
        if c["p_first"] is not None:
            p_low = c["p_first"] if a == key[0] else 1 - c["p_first"]
        elif c["winner"] is not None:
            p_low = 1.0 if c["winner"] == key[0] else 0.0
        else:
            continue
        per_pair.setdefault(key, []).append(p_low)
    wins: list[list[float]] = [[] for _ in range(n)]
    for (lo, hi), ps in per_pair.items():
        p = sum(ps) / len(ps)
        wins[lo].append(p)
        wins[hi].append(1 - p)
    return [sum(w) / len(w) if w else None for w in wins]


def consistency(rows: list[dict]) -> dict:
    """Position consistency: of the pairs with a verdict in both orders, the share
    whose two verdicts name the same winner; plus how often the first shown wins."""
    both = agree = first_wins = verdicts = 0
    for row in rows:
        by_pair: dict[tuple[int, int], list] = {}
        for c in row["comparisons"]:
            key = (min(c["first"], c["second"]), max(c["first"], c["second"]))
            by_pair.setdefault(key, []).append(c["winner"])
            if c["winner"] is not None:
                verdicts += 1
                first_wins += c["winner"] == c["first"]
        for winners in by_pair.values():
            if len(winners) == 2 and None not in winners:
                both += 1
                agree += winners[0] == winners[1]
    return {"pairs_with_both_verdicts": both, "position_consistent_pairs": agree,
            "position_consistency_rate": round(agree / both, 4) if both else None,
            "verdicts": verdicts,
            "first_shown_win_rate": round(first_wins / verdicts, 4) if verdicts else None}


def parser() -> argparse.ArgumentParser:
    from pipelines.judge_backends import judge_args

    ap = argparse.ArgumentParser(prog="align generate pairwise", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    judge_args(ap)
    return ap


def run(args: argparse.Namespace) -> tuple[str, dict]:
    from pipelines.judge_backends import backend, endpoint_llm, judge_info
    from pipelines.judging import ROWS_PER_BATCH, read_input, run_step, write_output

    keep = ("id", "prompt", "responses", "models", "source")
    rows = [{k: r[k] for k in keep if k in r} for r in read_input(args.input, args.limit)]
    endpoint = backend(args) == "endpoint"
    llm = endpoint_llm(args) if endpoint else None
    out, seconds = run_step("pairwise", rows, lambda: PairwiseJudgeStep(
        name="pairwise_judge", llm=llm, judge_model=args.model,
        judge_batch_size=args.batch_size, concurrency=args.concurrency,
        parse_retries=args.parse_retries, input_batch_size=ROWS_PER_BATCH))
    comparisons = sum(len(r["comparisons"]) for r in out)
    info = {
        "judge": {**judge_info(args), "name": out[0]["judge"] if out else None,
                  "method": "strict parse of 'Verdict: A|B'" if endpoint else
                  "probabilities of the tokens A and B after 'Verdict: '"},
        "prompt_templates": {"pairwise": PAIRWISE_TEMPLATE,
                             **({} if endpoint else {"assistant_prefix": VERDICT_PREFIX})},
        "orders": "every pair asked as (A, B) and as (B, A)",
        "position_consistency": consistency(out),
        "counts": {"rows": len(out), "responses": sum(len(r["responses"]) for r in out),
                   "comparisons": comparisons,
                   "parse_failures": sum(c["winner"] is None for r in out
                                         for c in r["comparisons"])},
        "input": args.input, "seconds": round(seconds, 1),
    }
    path = write_output(out, args.output, "align pairwise judgements", info)
    return path, info


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path, info = run(args)
    c, pc = info["counts"], info["position_consistency"]
    print(f"wrote {c['rows']} rows to {path}; {c['comparisons']} comparisons, "
          f"{c['parse_failures']} without a verdict; position consistency "
          f"{pc['position_consistency_rate']} over {pc['pairs_with_both_verdicts']} pairs "
          f"(first shown wins {pc['first_shown_win_rate']}); {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
