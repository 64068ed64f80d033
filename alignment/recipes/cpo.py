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

As for ORPO, the chat template is rendered here once into text ending on the EOS token,
because the experimental trainer appends an EOS to any answer that does not end with one.

Configuration: ``ScriptArguments`` below, ``trl.experimental.cpo.CPOConfig`` and
``trl.ModelConfig``; dataclass defaults < align's working defaults (printed) < YAML
``--config`` < command line. Writes the adapter (or full model) and tokenizer,
``metrics.json``, ``README.md``, ``training_curves.png`` and ``eval_pairs.jsonl``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alignment import training
from alignment.errors import ConfigError
from alignment.recipes._args import PairArguments
# the same rendering ORPO needs, for the same reason (see the module help)
from alignment.recipes.orpo import render_pairs


@dataclass
class ScriptArguments(PairArguments):
    """Data and model for a CPO/SimPO run; training settings live in CPOConfig."""


def _experimental():
    # align says "experimental" in its help and card; TRL's own import warning adds nothing
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return CPOConfig, CPOTrainer


def _defaults(values) -> training.Defaults:
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    simpo = values.loss_type in ("simpo", "alphapo")
    has_eval = bool(values.eval_dataset) or values.eval_split > 0
    d = training.lora_cpu_defaults(f"runs/{'simpo' if simpo else 'cpo'}-{name}",
                                   learning_rate=5e-5, has_eval=has_eval)
    d["max_length"] = (512, "prompt + answer tokens; longer answers are truncated")
    d["num_train_epochs"] = (1, "")
    if simpo:
        d["cpo_alpha"] = (0.0, "pure SimPO, as in the paper: no NLL term on the chosen answer")
        d["beta"] = (2.0, "SimPO's reward is a mean per-token log-prob, so beta is larger "
                          "(the paper tunes it around 2 to 2.5)")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, CPOConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig

    CPOConfig, _ = _experimental()
    return training.parse_recipe_args((ScriptArguments, CPOConfig, ModelConfig), argv, _defaults)


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align cpo (experimental in TRL)", chosen)

    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_before_loading(model_args, config)
    resume = training.resume_checkpoint(config)
    if config.beta <= 0:
        # SimPO divides its margin by beta; every loss scales the log-ratio by it
        raise ConfigError(f"--beta {config.beta}: beta must be > 0 (CPO uses ~0.1, SimPO ~2)")
    if config.cpo_alpha < 0:
        raise ConfigError(f"--cpo_alpha {config.cpo_alpha}: the NLL weight must be >= 0 "
                          "(0 is pure SimPO)")
    if config.generate_during_eval:
        raise ConfigError("--generate_during_eval logs samples to Weights & Biases or Comet "
                          "only; drop it (align eval compares generations offline)")
    training.check_eval_source(script, config)
    model_path = training.resolve_model_spec(script.model, model_args)

    # --- Data -------------------------------------------------------------------------
    train_pairs, eval_pairs = training.train_and_eval_pairs(script, config.seed)
    tokenizer = training.load_tokenizer(model_path)
    train_pairs = render_pairs(
        training.chat_format_pairs(train_pairs, tokenizer, script.wrap_plain_text), tokenizer)
    if eval_pairs is not None:
        eval_pairs = render_pairs(
            training.chat_format_pairs(eval_pairs, tokenizer, script.wrap_plain_text), tokenizer)
    print(f"align cpo ({config.loss_type} loss, cpo_alpha={config.cpo_alpha}): "
          f"{len(train_pairs)} training pairs"
          + (f", {len(eval_pairs)} held out" if eval_pairs is not None else "")
          + f" ({training.environment_note()})")

    # --- Model and trainer --------------------------------------------------------------
    from trl import get_peft_config

    _, CPOTrainer = _experimental()
    model = training.load_causal_lm(model_path, model_args)
    trainer = CPOTrainer(model=model, args=config, train_dataset=train_pairs,
                         eval_dataset=eval_pairs, processing_class=tokenizer,
                         peft_config=get_peft_config(model_args))
    if model_args.use_peft:
        trainer.model.print_trainable_parameters()

    # --- Train and save -----------------------------------------------------------------
    run = training.train_and_save(trainer, resume, evaluate=eval_pairs is not None,
                                  tokenizer=tokenizer)
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
