"""HelpSteer-style attributes: every response rated 0..4 on helpfulness, correctness,
coherence, complexity and verbosity (NVIDIA HelpSteer's five attributes).

    ranked dataset ──► AspectRatingStep (per response × attribute) ──► ranked dataset + card

The overall score is, by default, the helpfulness rating alone, the same rule
``alignment.data`` applies when it reads published HelpSteer data (the plain mean of the
rated attributes when ``--aspects`` leaves helpfulness out); ``--weights
helpfulness=0.65 correctness=0.8 coherence=0.45`` gives a weighted mean instead.
Complexity and verbosity describe a response rather than grade it, so they are kept
in ``ratings`` and weigh nothing unless asked.

In-process (default) a rating is the expected digit under the judge's next-token
probabilities after "Rating: "; with ``--base-url`` the endpoint answers
"Rating: N / Rationale: ..." and is parsed strictly (failures stay raw, null, and are
counted per attribute in the card).

Run it as ``align generate helpsteer IN -o OUT`` or ``python pipelines/helpsteer.py --help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `pipelines` and `alignment` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ASPECTS: dict[str, dict] = {
    "helpfulness": {
        "title": "Helpfulness",
        "rubric": "How useful is the response to the person who wrote the prompt, overall?",
        "anchors": "0: not helpful at all\n1: slightly helpful\n2: partly helpful\n"
                   "3: mostly helpful\n4: fully helpful"},
    "correctness": {
        "title": "Correctness",
        "rubric": "Does the response contain all the pertinent facts, without errors?",
        "anchors": "0: wrong throughout\n1: mostly wrong\n2: some errors or gaps\n"
                   "3: nearly all correct\n4: fully correct and complete"},
    "coherence": {
        "title": "Coherence",
        "rubric": "Is the response consistent and clearly expressed?",
        "anchors": "0: incoherent\n1: hard to follow\n2: somewhat clear\n"
                   "3: mostly clear\n4: perfectly clear and consistent"},
    "complexity": {
        "title": "Complexity",
        "rubric": "How much expertise does it take to write this response? (A description, "
                  "not a grade.)",
        "anchors": "0: anyone who speaks the language\n1: basic schooling\n"
                   "2: some education in the subject\n3: a university degree in it\n"
                   "4: deep expertise"},
    "verbosity": {
        "title": "Verbosity",
        "rubric": "How much detail does the response give relative to what the prompt asks? "
                  "(A description, not a grade.)",
        "anchors": "0: far too terse\n1: brief\n2: about right\n3: detailed\n"
                   "4: very long and exhaustive"},
}
SCALE = (0, 4)
DEFAULT_WEIGHTS = {"helpfulness": 1.0}


def parse_weights(items: list[str]) -> dict[str, float]:
    from alignment.errors import ConfigError

    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in ASPECTS:
            raise ConfigError(f"--weights {item}: unknown attribute; expected one of "
                              f"{', '.join(ASPECTS)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"--weights {item}: write ATTRIBUTE=NUMBER, e.g. "
                              "helpfulness=0.65") from None
    return out


def parser() -> argparse.ArgumentParser:
    from pipelines.feedback import judge_args

    ap = argparse.ArgumentParser(prog="align generate helpsteer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    judge_args(ap)
    ap.add_argument("--aspects", nargs="+", default=list(ASPECTS), choices=list(ASPECTS),
                    help="attributes to rate (default: all five)")
    ap.add_argument("--weights", nargs="+", default=None, metavar="ATTRIBUTE=W",
                    help="overall score as a weighted mean of these attributes "
                         "(default: helpfulness alone)")
    ap.add_argument("--rationales", action="store_true",
                    help="in-process: also generate a one-line rationale per rating")
    return ap


def run(args: argparse.Namespace) -> tuple[str, dict]:
    from pipelines.feedback import (INPROCESS_RATING_TEMPLATE, RATING_TEMPLATE,
                                    AspectRatingStep, aspect_counts, backend, endpoint_llm,
                                    judge_info, read_input, run_step, write_output)

    from alignment.errors import ConfigError

    aspects = {a: ASPECTS[a] for a in args.aspects}
    if args.weights:
        weights = parse_weights(args.weights)
    else:  # helpfulness alone, or the plain mean when helpfulness is not rated
        weights = DEFAULT_WEIGHTS if "helpfulness" in aspects else dict.fromkeys(aspects, 1.0)
    if missing := sorted(set(weights) - set(aspects)):
        raise ConfigError(f"weighted attribute(s) {missing} are not rated; add them to "
                          "--aspects or change --weights")
    keep = ("id", "prompt", "responses", "models", "source")
    rows = [{k: r[k] for k in keep if k in r} for r in read_input(args.input, args.limit)]
    endpoint = backend(args) == "endpoint"
    llm = endpoint_llm(args) if endpoint else None
    out, seconds = run_step("helpsteer", rows, lambda: AspectRatingStep(
        name="helpsteer_attributes", aspects=aspects, scale=SCALE, weights=weights, llm=llm,
        judge_model=args.model, judge_batch_size=args.batch_size,
        rationales=args.rationales, concurrency=args.concurrency,
        parse_retries=args.parse_retries, input_batch_size=64))
    counts = aspect_counts(out, aspects)
    info = {
        "judge": {**judge_info(args), "name": out[0]["judge"] if out else None,
                  "method": "strict parse of 'Rating: N' / JSON answers" if endpoint else
                  "expected rating from next-token probabilities of the digits"},
        "attributes": list(aspects), "scale": list(SCALE),
        "overall_score": {"weights": weights, "rule": "weighted mean of these attributes "
                          "(null if any of them has no rating)"},
        "prompt_templates": {"rating": RATING_TEMPLATE if endpoint
                             else INPROCESS_RATING_TEMPLATE + "\n[assistant] Rating: ",
                             "aspects": aspects},
        "counts": counts, "input": args.input, "seconds": round(seconds, 1),
        "responses_per_second": round(counts["responses"] / seconds, 3) if seconds else None,
    }
    path = write_output(out, args.output, "align HelpSteer-style attributes", info)
    return path, info


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path, info = run(args)
    c = info["counts"]
    print(f"wrote {c['rows']} rows ({c['responses']} responses) to {path}; parse failures "
          f"per attribute: {c['parse_failures_per_aspect']}; {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
