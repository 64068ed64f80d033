"""Aspect ratings: every response of a ranked dataset rated on several aspects, one
prompt per response and aspect; two presets of rubrics (``alignment.rubrics``):

- ``ultrafeedback``: instruction following, truthfulness, honesty and helpfulness on
  1..5, the overall score their mean (UltraFeedback's layout: aspect, scoring anchors,
  format, then the text to annotate);
- ``helpsteer``: helpfulness, correctness, coherence, complexity and verbosity on 0..4
  (NVIDIA HelpSteer's attributes), the overall score helpfulness alone by default.

    ranked dataset ──► AspectRatingStep (per response × aspect) ──► ranked dataset + card

Run them as ``align generate ultrafeedback IN -o OUT`` and ``align generate helpsteer
IN -o OUT`` (or ``python -m pipelines.aspect_ratings ultrafeedback|helpsteer ...``).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass

from alignment import rubrics

_BACKENDS = """\
In-process (default, ``--model smollm2`` or a folder) a rating is the expected digit
under the judge's next-token probabilities after "Rating: " (``--rationales`` adds a
one-line rationale generated after the rating). With ``--base-url`` the judge is any
OpenAI-compatible endpoint asked to reply "Rating: N / Rationale: ..."; answers are
parsed strictly and a failure stays raw, null, and counted per {noun} in the card."""


@dataclass(frozen=True)
class Preset:
    """One rating scheme: its rubrics and scale, how the overall score is made, and the
    words its command, card and messages use."""

    aspects: dict[str, dict]
    scale: tuple[int, int]
    # the overall score's weights; None: the plain mean of the rated aspects, and no
    # --weights flag
    weights: dict[str, float] | None
    noun: str  # "aspect" or "attribute"
    title: str  # the dataset card's
    step: str  # the rating step's name (a distilabel step name)
    description: str

    def default_weights(self, rated: dict[str, dict]) -> dict[str, float] | None:
        if self.weights is None:
            return None
        # the preset's weights, or the plain mean when they weigh nothing that is rated
        return self.weights if set(self.weights) <= set(rated) else dict.fromkeys(rated, 1.0)


PRESETS: dict[str, Preset] = {
    "ultrafeedback": Preset(
        aspects=rubrics.ULTRAFEEDBACK, scale=rubrics.ULTRAFEEDBACK_SCALE, weights=None,
        noun="aspect", title="align UltraFeedback-style ratings", step="ultrafeedback_ratings",
        description="UltraFeedback-style ratings: every response rated 1..5 on instruction "
                    "following, truthfulness, honesty and helpfulness, with rationales; the "
                    "overall score is their mean. The aspect prompts follow UltraFeedback's "
                    "layout (aspect, scoring anchors, format, then the text to annotate), "
                    "one response per request.\n\n" + _BACKENDS.format(noun="aspect")),
    "helpsteer": Preset(
        aspects=rubrics.HELPSTEER, scale=rubrics.HELPSTEER_SCALE,
        weights=rubrics.HELPSTEER_WEIGHTS, noun="attribute",
        title="align HelpSteer-style attributes", step="helpsteer_attributes",
        description="HelpSteer-style attributes: every response rated 0..4 on helpfulness, "
                    "correctness, coherence, complexity and verbosity (NVIDIA HelpSteer's "
                    "five attributes).\n\nThe overall score is, by default, the helpfulness "
                    "rating alone, the same rule ``alignment.data`` applies when it reads "
                    "published HelpSteer data (the plain mean of the rated attributes when "
                    "``--aspects`` leaves helpfulness out); ``--weights helpfulness=0.65 "
                    "correctness=0.8 coherence=0.45`` gives a weighted mean instead. "
                    "Complexity and verbosity describe a response rather than grade it, so "
                    "they are kept in ``ratings`` and weigh nothing unless asked.\n\n"
                    + _BACKENDS.format(noun="attribute")),
}


def parse_weights(preset: Preset, items: list[str]) -> dict[str, float]:
    from alignment.errors import ConfigError

    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in preset.aspects:
            raise ConfigError(f"--weights {item}: unknown {preset.noun}; expected one of "
                              f"{', '.join(preset.aspects)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"--weights {item}: write {preset.noun.upper()}=NUMBER, e.g. "
                              f"{next(iter(preset.weights or preset.aspects))}=0.65") from None
    return out


def parser(name: str) -> argparse.ArgumentParser:
    from pipelines.judge_backends import judge_args

    preset = PRESETS[name]
    text = "\n\n".join(textwrap.fill(p, 88) for p in preset.description.split("\n\n"))
    ap = argparse.ArgumentParser(prog=f"align generate {name}", description=text,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    judge_args(ap)
    ap.add_argument("--aspects", nargs="+", default=list(preset.aspects),
                    choices=list(preset.aspects),
                    help=f"{preset.noun}s to rate (default: all {len(preset.aspects)})")
    if preset.weights is not None:
        ap.add_argument("--weights", nargs="+", default=None,
                        metavar=f"{preset.noun.upper()}=W",
                        help=f"overall score as a weighted mean of these {preset.noun}s "
                             f"(default: {', '.join(preset.weights)} alone)")
    ap.add_argument("--rationales", action="store_true",
                    help="in-process: also generate a one-line rationale per rating")
    return ap


def run(name: str, args: argparse.Namespace) -> tuple[str, dict]:
    from alignment.errors import ConfigError
    from pipelines.judge_backends import backend, endpoint_llm, judge_info
    from pipelines.judging import ROWS_PER_BATCH, read_input, run_step, write_output
    from pipelines.rating_steps import AspectRatingStep, aspect_counts

    preset = PRESETS[name]
    aspects = {a: preset.aspects[a] for a in args.aspects}
    given = getattr(args, "weights", None)
    weights = parse_weights(preset, given) if given else preset.default_weights(aspects)
    if weights and (missing := sorted(set(weights) - set(aspects))):
        raise ConfigError(f"weighted {preset.noun}(s) {missing} are not rated; add them to "
                          "--aspects or change --weights")
    keep = ("id", "prompt", "responses", "models", "source")
    rows = [{k: r[k] for k in keep if k in r} for r in read_input(args.input, args.limit)]
    endpoint = backend(args) == "endpoint"
    llm = endpoint_llm(args) if endpoint else None
    out, seconds = run_step(name, rows, lambda: AspectRatingStep(
        name=preset.step, aspects=aspects, scale=preset.scale, weights=weights, llm=llm,
        judge_model=args.model, judge_batch_size=args.batch_size,
        rationales=args.rationales, concurrency=args.concurrency,
        parse_retries=args.parse_retries, input_batch_size=ROWS_PER_BATCH))
    counts = aspect_counts(out, aspects)
    overall = ("mean of the aspect ratings (null if any aspect has none)" if weights is None
               else {"weights": weights, "rule": f"weighted mean of these {preset.noun}s "
                     "(null if any of them has no rating)"})
    info = {
        "judge": {**judge_info(args), "name": out[0]["judge"] if out else None,
                  "method": "strict parse of 'Rating: N' / JSON answers" if endpoint else
                  "expected rating from next-token probabilities of the digits"},
        f"{preset.noun}s": list(aspects), "scale": list(preset.scale),
        "overall_score": overall,
        "prompt_templates": {"rating": rubrics.ASPECT_RATING_TEMPLATE if endpoint
                             else rubrics.INPROCESS_ASPECT_RATING_TEMPLATE
                             + "\n[assistant] " + rubrics.RATING_PREFIX,
                             "aspects": aspects},
        "counts": counts, "input": args.input, "seconds": round(seconds, 1),
        "responses_per_second": round(counts["responses"] / seconds, 3) if seconds else None,
    }
    path = write_output(out, args.output, preset.title, info)
    return path, info


def main(argv: list[str] | None = None) -> int:
    """``PRESET [options]``: rate with that preset."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in PRESETS:
        print(f"usage: python -m pipelines.aspect_ratings {{{','.join(PRESETS)}}} [options]",
              file=sys.stderr)
        return 2
    name = argv[0]
    path, info = run(name, parser(name).parse_args(argv[1:]))
    c = info["counts"]
    print(f"wrote {c['rows']} rows ({c['responses']} responses) to {path}; parse failures "
          f"per {PRESETS[name].noun}: {c['parse_failures_per_aspect']}; {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
