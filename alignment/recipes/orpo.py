"""align orpo: odds-ratio preference optimisation, SFT and preference in one loss, no
reference model.

    align orpo --dataset pairs.jsonl [--model smollm2] [--output_dir runs/orpo]
               [--config recipe.yaml] [any ORPOConfig / ModelConfig flag]

EXPERIMENTAL: TRL 1.16 ships ``ORPOTrainer`` only in ``trl.experimental.orpo``, whose API
"may change or be removed in any release"; this command follows it and may change with it.

The loss is the negative log-likelihood of the chosen answer plus ``--beta`` (λ in the
paper) times the log odds-ratio of chosen over rejected. Any preference or ranked dataset
`align data` reads trains here; several ``--dataset`` are mixed (``PATH@0.5``, ``PATH@500``).

The chat template is rendered once, into text that ends on the EOS token, because the
experimental trainer appends an EOS to any answer that does not end with one (see
``alignment/recipes/_reference_free.py``, shared with `align cpo`).

Configuration: ``ScriptArguments`` below, ``trl.experimental.orpo.ORPOConfig`` and
``trl.ModelConfig``; dataclass defaults < align's working defaults (printed) < YAML
``--config`` < command line. Writes the adapter (or full model) and tokenizer,
``metrics.json``, ``README.md``, ``training_curves.png`` and ``eval_pairs.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignment import training
from alignment.recipes import _reference_free
from alignment.recipes._args import PairArguments


@dataclass
class ScriptArguments(PairArguments):
    """Data and model for an ORPO run; training settings live in ORPOConfig."""


def _defaults(values) -> training.Defaults:
    return _reference_free.defaults("orpo", values)


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, ORPOConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig

    ORPOConfig, _ = _reference_free.trainer_classes("orpo")
    return training.parse_recipe_args((ScriptArguments, ORPOConfig, ModelConfig), argv, _defaults)


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align orpo (experimental in TRL)", chosen)
    run, train_pairs, eval_pairs = _reference_free.train("orpo", script, config, model_args)
    if run is None:  # other ranks: the main process writes the rest
        return 0
    files = training.write_run(
        run, script, model_args, config, method="orpo", train_data=train_pairs,
        eval_data=eval_pairs, save_eval_pairs=True,
        metrics={"train_pairs": len(train_pairs),
                 "eval_pairs": len(eval_pairs) if eval_pairs is not None else 0},
        hyperparameters={
            "trainer": "trl.experimental.orpo.ORPOTrainer (experimental)",
            "beta (lambda)": config.beta, "learning_rate": config.learning_rate,
            "epochs": config.num_train_epochs, "max_steps": config.max_steps,
            "steps": run.steps, "batch_size": config.per_device_train_batch_size,
            "max_length": config.max_length, "seed": config.seed,
            **({"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha}
               if model_args.use_peft else {})})
    training.print_run(run, files)
    return 0
