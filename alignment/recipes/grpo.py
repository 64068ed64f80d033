"""align grpo: optimise a chat model against a reward model with GRPO (online RL).

    align grpo --reward_model runs/rm-smollm2 --dataset prompts.jsonl [--model smollm2]
               [--config recipe.yaml] [any GRPOConfig / ModelConfig flag]
    align grpo --verifier row --dataset prompts_with_checks.jsonl     # RLVR, no reward model

One of align's two RLHF paths with a learned reward. TRL 1.16 has no PPOTrainer (PPO left
the stable API), so reward-model RL is GRPO here, or RLOO (`align rloo`): for every prompt
the policy samples ``--num_generations`` completions, the reward model scores each, and a
completion's advantage is its reward relative to its group (minus the group mean, divided
by the group's standard deviation unless ``--scale_rewards none``). TRL's GRPO default is
no KL penalty (``beta=0``); align defaults to ``--beta 0.04`` because a learned reward is
easy to exploit, and the reference is the base with its LoRA adapters switched off.

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

Configuration: ``ScriptArguments`` below, ``trl.GRPOConfig`` and ``trl.ModelConfig``;
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
    """Prompts, policy and reward model; training settings live in GRPOConfig."""


def _defaults(values) -> training.Defaults:
    return _rl.defaults("grpo", values, {
        "num_generations": (2, "completions per group: the fewest GRPO allows, cheap on CPU"),
        "beta": (0.04, "KL penalty: a learned reward is easy to exploit (TRL's default is 0)")})


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, GRPOConfig, ModelConfig) and the working defaults applied."""
    from trl import GRPOConfig, ModelConfig

    return training.parse_recipe_args((ScriptArguments, GRPOConfig, ModelConfig), argv, _defaults)


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    from trl import GRPOTrainer

    return _rl.train("grpo", GRPOTrainer, script, config, model_args, chosen)
