"""align rloo: optimise a chat model against a reward model with RLOO (online RL).

    align rloo --reward_model runs/rm-smollm2 --dataset prompts.jsonl [--model smollm2]
               [--config recipe.yaml] [any RLOOConfig / ModelConfig flag]
    align rloo --verifier row --dataset prompts_with_checks.jsonl     # RLVR, no reward model

This is align's RLHF path with a learned reward. TRL 1.16 has no PPOTrainer (PPO left the
stable API), so reward-model RL is REINFORCE Leave-One-Out here, or GRPO (`align grpo`):
for every prompt the policy samples ``--num_generations`` completions, the reward model
scores each, and each completion's advantage is its reward minus the mean reward of the
other completions of the same prompt; a KL penalty (``--beta``) keeps the policy near the
reference (the base with its LoRA adapters switched off).

``--reward_model`` is a sequence-classification model folder, such as the one `align rm`
writes. ``--verifier SPEC`` adds a programmatic reward (RLVR, a check of
``alignment.verifiers`` scoring each completion in [0, 1], e.g. ``max_words:limit=40``),
and ``--verifier row`` applies the specs each prompt carries in its ``verifiers`` column;
with verifiers the reward model is optional. Several rewards are summed with TRL's
``--reward_weights`` (one per function: the reward model first, then the verifiers).

``--dataset`` is anything with prompts: a prompt list (JSONL rows ``{"prompt": ...}``,
optionally with ``verifiers``), preference pairs or ranked data (their prompts), or
conversations (every turn before the last assistant reply). Several are mixed
(``PATH@0.5``).

Configuration: ``ScriptArguments`` below, ``trl.RLOOConfig`` and ``trl.ModelConfig``;
dataclass defaults < align's working defaults (printed) < YAML ``--config`` < command line.

Writes: the adapter (or full model) and tokenizer, ``metrics.json``, ``README.md`` and
``training_curves.png`` (loss, mean reward, KL).
"""

from __future__ import annotations

from dataclasses import dataclass

from alignment import training
from alignment.recipes import _rl


@dataclass
class ScriptArguments(_rl.ScriptArguments):
    """Prompts, policy and reward model; training settings live in RLOOConfig."""


def _defaults(values) -> training.Defaults:
    return _rl.defaults("rloo", values, {
        "num_generations": (2, "completions per prompt: the fewest RLOO allows, cheap on CPU")})


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, RLOOConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig, RLOOConfig

    return training.parse_recipe_args((ScriptArguments, RLOOConfig, ModelConfig), argv, _defaults)


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    from trl import RLOOTrainer

    return _rl.train("rloo", RLOOTrainer, script, config, model_args, chosen)
