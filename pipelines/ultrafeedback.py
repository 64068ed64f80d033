"""UltraFeedback-style ratings: every response rated 1..5 on instruction following,
truthfulness, honesty and helpfulness, with rationales; the overall score is their mean.

    ranked dataset ──► AspectRatingStep (per response × aspect) ──► ranked dataset + card

In-process (default, ``--model smollm2`` or a folder) a rating is the expected digit
under the judge's next-token probabilities after "Rating: " (``--rationales`` adds a
one-line rationale generated after the rating). With ``--base-url`` the judge is any
OpenAI-compatible endpoint asked to reply "Rating: N / Rationale: ..."; answers are
parsed strictly and a failure stays raw, null, and counted per aspect in the card.
The aspect prompts follow UltraFeedback's layout (aspect, scoring anchors, format,
then the text to annotate), one response per request.

Run it as ``align generate ultrafeedback IN -o OUT`` or
``python pipelines/ultrafeedback.py --help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `pipelines` and `alignment` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alignment import rubrics  # noqa: E402

ASPECTS = rubrics.ULTRAFEEDBACK
SCALE = rubrics.ULTRAFEEDBACK_SCALE


def parser() -> argparse.ArgumentParser:
    from pipelines.feedback import judge_args

    ap = argparse.ArgumentParser(prog="align generate ultrafeedback", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    judge_args(ap)
    ap.add_argument("--aspects", nargs="+", default=list(ASPECTS), choices=list(ASPECTS),
                    help="aspects to rate (default: all four)")
    ap.add_argument("--rationales", action="store_true",
                    help="in-process: also generate a one-line rationale per rating")
    return ap


def run(args: argparse.Namespace) -> tuple[str, dict]:
    from pipelines.feedback import (AspectRatingStep, aspect_counts, backend, endpoint_llm,
                                    judge_info, read_input, run_step, write_output)

    aspects = {a: ASPECTS[a] for a in args.aspects}
    keep = ("id", "prompt", "responses", "models", "source")
    rows = [{k: r[k] for k in keep if k in r} for r in read_input(args.input, args.limit)]
    endpoint = backend(args) == "endpoint"
    llm = endpoint_llm(args) if endpoint else None
    out, seconds = run_step("ultrafeedback", rows, lambda: AspectRatingStep(
        name="ultrafeedback_ratings", aspects=aspects, scale=SCALE, llm=llm,
        judge_model=args.model, judge_batch_size=args.batch_size,
        rationales=args.rationales, concurrency=args.concurrency,
        parse_retries=args.parse_retries, input_batch_size=64))
    counts = aspect_counts(out, aspects)
    info = {
        "judge": {**judge_info(args), "name": out[0]["judge"] if out else None,
                  "method": "strict parse of 'Rating: N' / JSON answers" if endpoint else
                  "expected rating from next-token probabilities of the digits"},
        "aspects": list(aspects), "scale": list(SCALE),
        "overall_score": "mean of the aspect ratings (null if any aspect has none)",
        "prompt_templates": {"rating": rubrics.ASPECT_RATING_TEMPLATE if endpoint
                             else rubrics.INPROCESS_ASPECT_RATING_TEMPLATE
                             + "\n[assistant] " + rubrics.RATING_PREFIX,
                             "aspects": aspects},
        "counts": counts, "input": args.input, "seconds": round(seconds, 1),
        "responses_per_second": round(counts["responses"] / seconds, 3) if seconds else None,
    }
    path = write_output(out, args.output, "align UltraFeedback-style ratings", info)
    return path, info


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path, info = run(args)
    c = info["counts"]
    print(f"wrote {c['rows']} rows ({c['responses']} responses) to {path}; parse failures "
          f"per aspect: {c['parse_failures_per_aspect']}; {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
