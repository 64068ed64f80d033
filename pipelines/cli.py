"""`align generate <pipeline> [options]`: run one of the pipelines.

The list is literal: adding a pipeline is one line here, and its module exposes
``main(argv: list[str]) -> int`` (also runnable as ``python -m pipelines.<module>``). A
module serving several pipelines (``aspect_ratings``: one per rubric preset) gets the
pipeline's name as its first argument.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help[, arguments put before the user's])
PIPELINES: dict[str, tuple] = {
    "preference": ("pipelines.preference",
                   "seed instructions -> N teacher responses -> rating judge -> ranked data"),
    "self-instruct": ("pipelines.self_instruct",
                      "Alpaca Self-Instruct: new instructions (ROUGE-L novelty), then answers"),
    "evol-instruct": ("pipelines.evol_instruct",
                      "WizardLM Evol-Instruct: in-depth/in-breadth rounds with elimination"),
    "orca": ("pipelines.orca", "Orca explanation tuning: step-by-step answers under 16 "
             "system messages"),
    "magpie": ("pipelines.magpie", "Magpie: instructions from the chat template's user-turn "
               "prefix alone, then answers"),
    "multi-turn": ("pipelines.multi_turn", "UltraChat-style conversations with a simulated user"),
    "reversal": ("pipelines.reversal", "reversal augmentation: facts and Q/A in both directions"),
    "constraints": ("pipelines.constraints",
                    "prompts with checkable constraints (verifier specs), split by task"),
    "personas": ("pipelines.personas",
                 "persona x task-template requests, optionally written as prompts by a teacher"),
    "responses": ("pipelines.responses",
                  "N candidate responses per prompt from one or more models (unscored)"),
    "ultrafeedback": ("pipelines.aspect_ratings",
                      "rate responses 1-5 on four UltraFeedback aspects, with rationales",
                      ("ultrafeedback",)),
    "helpsteer": ("pipelines.aspect_ratings",
                  "rate responses 0-4 on the five HelpSteer attributes", ("helpsteer",)),
    "ranking": ("pipelines.ranking", "rank k responses at once (Nectar-style, A..G)"),
    "pairwise": ("pipelines.pairwise",
                 "pairwise judge in both orders; reports position consistency"),
    "reward-model": ("pipelines.reward_model",
                     "score responses with a sequence-classification reward model"),
    "combine": ("pipelines.combine",
                "merge several judges' scores (mean/majority) and report agreement"),
    "verify": ("pipelines.verify", "score responses with programmatic verifiers (no model)"),
}


def _usage() -> str:
    width = max(map(len, PIPELINES))
    lines = ["usage: align generate <pipeline> [options]", "", "pipelines:"]
    lines += [f"  {name:<{width}}  {entry[1]}" for name, entry in PIPELINES.items()]
    lines += ["", "Run `align generate <pipeline> --help` for a pipeline's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in PIPELINES:
        print(f"align generate: unknown pipeline '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module, _, *first = PIPELINES[name]
    return int(importlib.import_module(module).main([*(first[0] if first else ()), *rest]) or 0)


if __name__ == "__main__":
    sys.exit(main())
