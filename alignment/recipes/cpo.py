"""align cpo: contrastive preference optimisation, and SimPO through its loss, with no
reference model.

    align cpo --dataset pairs.jsonl [--model smollm2] [--output_dir runs/cpo]
              [--loss_type sigmoid|hinge|ipo|simpo|alphapo] [--config recipe.yaml]
              [any CPOConfig / ModelConfig flag]

EXPERIMENTAL: TRL 1.16 ships ``CPOTrainer`` only in ``trl.experimental.cpo``, whose API
"may change or be removed in any release"; this command follows it and may change with it.

CPO's loss is a preference term on the policy's own log-probabilities (no reference model,
so one copy of the weights even without LoRA) plus ``--cpo_alpha`` times the negative
log-likelihood of the chosen answer. ``--loss_type simpo`` gives SimPO: the preference term
uses length-normalised (mean per-token) log-probabilities and a target margin
``--simpo_gamma``. The SimPO paper trains without the likelihood term, so with
``--loss_type simpo`` align defaults ``--cpo_alpha 0`` (pure SimPO; set it yourself for
"CPO-SimPO") and ``--beta 2.0`` (the paper tunes beta around 2 to 2.5 because normalised
log-probabilities are small; TRL's 0.1 suits CPO's summed ones). ``--loss_type alphapo`` is
TRL's shorthand for SimPO with ``--alpha`` reward shaping.

As for ORPO, the chat template is rendered once into text ending on the EOS token, because
the experimental trainer appends an EOS to any answer that does not end with one
(``alignment/recipes/_reference_free.py``, shared with `align orpo`).

Configuration: ``ScriptArguments`` below, ``trl.experimental.cpo.CPOConfig`` and
``trl.ModelConfig``; dataclass defaults < align's working defaults (printed) < YAML
``--config`` < command line. Writes the adapter (or full model) and tokenizer,
``metrics.json``, ``README.md``, ``training_curves.png`` and ``eval_pairs.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignment import training
from alignment.errors import ConfigError
from alignment.recipes import _reference_free
from alignment.recipes._args import PairArguments


@dataclass
class ScriptArguments(PairArguments):
    """Data and model for a CPO/SimPO run; training settings live in CPOConfig."""


def _defaults(values) -> training.Defaults:
    simpo = values.loss_type in ("simpo", "alphapo")
    d = _reference_free.defaults("simpo" if simpo else "cpo", values)
    if simpo:
        d["cpo_alpha"] = (0.0, "pure SimPO, as in the paper: no NLL term on the chosen answer")
        d["beta"] = (2.0, "SimPO's reward is a mean per-token log-prob, so beta is larger "
                          "(the paper tunes it around 2 to 2.5)")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, CPOConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig

    CPOConfig, _ = _reference_free.trainer_classes("cpo")
    return training.parse_recipe_args((ScriptArguments, CPOConfig, ModelConfig), argv, _defaults)


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align cpo (experimental in TRL)", chosen)
    if config.beta <= 0:
        # SimPO divides its margin by beta; every loss scales the log-ratio by it
        raise ConfigError(f"--beta {config.beta}: beta must be > 0 (CPO uses ~0.1, SimPO ~2)")
    if config.cpo_alpha < 0:
        raise ConfigError(f"--cpo_alpha {config.cpo_alpha}: the NLL weight must be >= 0 "
                          "(0 is pure SimPO)")
    run, train_pairs, eval_pairs = _reference_free.train(
        "cpo", script, config, model_args,
        describe=f" ({config.loss_type} loss, cpo_alpha={config.cpo_alpha})")
    if run is None:  # other ranks: the main process writes the rest
        return 0
    files = training.write_run(
        run, script, model_args, config, method="cpo", train_data=train_pairs,
        eval_data=eval_pairs, save_eval_pairs=True,
        metrics={"train_pairs": len(train_pairs),
                 "eval_pairs": len(eval_pairs) if eval_pairs is not None else 0},
        hyperparameters={
            "trainer": "trl.experimental.cpo.CPOTrainer (experimental)",
            "loss_type": config.loss_type, "beta": config.beta,
            "cpo_alpha": config.cpo_alpha,
            **({"simpo_gamma": config.simpo_gamma} if config.loss_type == "simpo" else {}),
            "alpha": config.alpha, "learning_rate": config.learning_rate,
            "epochs": config.num_train_epochs, "max_steps": config.max_steps,
            "steps": run.steps, "batch_size": config.per_device_train_batch_size,
            "max_length": config.max_length, "seed": config.seed,
            **({"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha}
               if model_args.use_peft else {})})
    held_out = run.out / "eval_pairs.jsonl"
    training.print_run(run, files, notes=[
        f"held out:    {held_out}  (align eval --model {run.out} --dataset {held_out}; its "
        "implicit-reward figures assume DPO's reward, so read the judged win rate)"]
        if eval_pairs is not None else [])
    return 0
