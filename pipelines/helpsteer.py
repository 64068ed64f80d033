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

from alignment import rubrics  # noqa: E402

ASPECTS = rubrics.HELPSTEER
SCALE = rubrics.HELPSTEER_SCALE
DEFAULT_WEIGHTS = rubrics.HELPSTEER_WEIGHTS


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
    from pipelines.feedback import (AspectRatingStep, aspect_counts, backend, endpoint_llm,
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
        "prompt_templates": {"rating": rubrics.ASPECT_RATING_TEMPLATE if endpoint
                             else rubrics.INPROCESS_ASPECT_RATING_TEMPLATE
                             + "\n[assistant] " + rubrics.RATING_PREFIX,
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
