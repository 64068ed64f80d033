"""`align generate <pipeline> [options]`: run one of the pipelines.

The table is literal (:mod:`alignment.dispatch`): adding a pipeline is one line here, and
its module exposes ``main(argv: list[str]) -> int`` (also runnable as ``python -m
pipelines.<module>``). A module serving several pipelines (``aspect_ratings``: one per
rubric preset) gets the pipeline's name as its first argument.
"""

from __future__ import annotations

import sys

from alignment.dispatch import Command, dispatch

PIPELINES: dict[str, Command] = {
    "preference": Command("pipelines.preference",
                          "seed instructions -> N teacher responses -> rating judge -> ranked "
                          "data"),
    "self-instruct": Command("pipelines.self_instruct",
                             "Alpaca Self-Instruct: new instructions (ROUGE-L novelty), then "
                             "answers"),
    "evol-instruct": Command("pipelines.evol_instruct",
                             "WizardLM Evol-Instruct: in-depth/in-breadth rounds with elimination"),
    "orca": Command("pipelines.orca",
                    "Orca explanation tuning: step-by-step answers under 16 system messages"),
    "magpie": Command("pipelines.magpie",
                      "Magpie: instructions from the chat template's user-turn prefix alone, then"
                      " answers"),
    "multi-turn": Command("pipelines.multi_turn",
                          "UltraChat-style conversations with a simulated user"),
    "reversal": Command("pipelines.reversal",
                        "reversal augmentation: facts and Q/A in both directions"),
    "constraints": Command("pipelines.constraints",
                           "prompts with checkable constraints (verifier specs), split by task"),
    "personas": Command("pipelines.personas",
                        "persona x task-template requests, optionally written as prompts by a "
                        "teacher"),
    "responses": Command("pipelines.responses",
                         "N candidate responses per prompt from one or more models (unscored)"),
    "ultrafeedback": Command("pipelines.aspect_ratings",
                             "rate responses 1-5 on four UltraFeedback aspects, with rationales", first=("ultrafeedback",)),
    "helpsteer": Command("pipelines.aspect_ratings",
                         "rate responses 0-4 on the five HelpSteer attributes", first=("helpsteer",)),
    "ranking": Command("pipelines.ranking", "rank k responses at once (Nectar-style, A..G)"),
    "pairwise": Command("pipelines.pairwise",
                        "pairwise judge in both orders; reports position consistency"),
    "reward-model": Command("pipelines.reward_model",
                            "score responses with a sequence-classification reward model"),
    "combine": Command("pipelines.combine",
                       "merge several judges' scores (mean/majority) and report agreement"),
    "verify": Command("pipelines.verify",
                      "score responses with programmatic verifiers (no model)"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("align generate", "pipeline", PIPELINES,
                    list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
