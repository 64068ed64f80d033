"""align kto: Kahneman-Tversky optimisation on unpaired good and bad completions.

    align kto --dataset feedback.jsonl [--model smollm2] [--output_dir runs/kto]
              [--config recipe.yaml] [any KTOConfig / ModelConfig flag]

KTO needs only a thumbs-up or thumbs-down per completion (``{"prompt", "completion",
"label"}``), not a pair. Preference pairs and ranked data are converted by the data layer:
each pair gives its chosen answer as desirable and its rejected one as undesirable. Several
``--dataset`` are mixed (``PATH@0.5``, ``PATH@500``). ``--desirable_weight`` /
``--undesirable_weight`` rebalance a dataset with more of one label than the other.

TRL's ``KTOTrainer`` is in the stable API in TRL 1.16 (``trl.KTOTrainer``; the old
``trl.experimental.kto`` path is deprecated). With LoRA the reference model is the base
with its adapters switched off.

Configuration: ``ScriptArguments`` below, ``trl.KTOConfig`` and ``trl.ModelConfig``;
dataclass defaults < align's working defaults (printed) < YAML ``--config`` < command line.

Writes: the adapter (or full model) and tokenizer, ``metrics.json``, ``README.md`` and
``training_curves.png``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alignment import training
from alignment.data.training_sets import is_templated
from alignment.recipes._args import HeldOutArguments
from alignment.errors import ConfigError, DataError


@dataclass
class ScriptArguments(HeldOutArguments):
    """Data and model for a KTO run; training settings live in KTOConfig."""


def _defaults(values) -> training.Defaults:
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    has_eval = bool(values.eval_dataset) or values.eval_split > 0
    d = training.lora_cpu_defaults(f"runs/kto-{name}", learning_rate=5e-5, has_eval=has_eval)
    d["max_length"] = (512, "prompt + completion tokens; longer rows are truncated")
    d["num_train_epochs"] = (1, "")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, KTOConfig, ModelConfig) and the working defaults applied."""
    from trl import KTOConfig, ModelConfig

    return training.parse_recipe_args((ScriptArguments, KTOConfig, ModelConfig), argv, _defaults)


def load_unpaired(specs: list[str], seed: int):
    """KTO rows from one dataset or a mixture, shuffled, with both labels present."""
    from alignment.data import load_kto, load_mixture, parse_mixture_spec

    if not specs:
        raise ConfigError("no dataset given: pass --dataset PATH (KTO rows, preference pairs or "
                          "ranked completions in any format `align data inspect` reads)")
    where = ", ".join(specs)
    if len(specs) == 1 and parse_mixture_spec(specs[0])[1] is None:
        # TRL samples KTO batches in order (the KL term pairs neighbours), so shuffle here:
        # converted pairs would otherwise sit as desirable/undesirable neighbours forever.
        rows = load_kto(specs[0]).shuffle(seed=seed)
    else:
        rows = load_mixture(list(specs), "kto", seed)
    labels = set(rows["label"])
    if labels != {True, False}:
        kind = "desirable" if True in labels else "undesirable"
        raise DataError(where, f"every row is {kind}; KTO learns from both kinds, so add "
                               "rows with the other label", field="label")
    if len({isinstance(p, list) for p in rows["prompt"]}) != 1:
        raise DataError(where, "mixes plain-text and conversational prompts; convert them to "
                               "one kind (align data convert)", field="prompt")
    return rows


def chat_format(rows, tokenizer):
    """Wrap plain-text rows as a user turn and an assistant reply so the chat template
    is applied (once, by TRL); conversational and pre-templated rows are left alone."""
    first = rows[0]
    if isinstance(first["prompt"], list) or not tokenizer.chat_template:
        return rows
    if is_templated(first["prompt"], tokenizer):
        return rows
    return rows.map(lambda row: {
        "prompt": [{"role": "user", "content": row["prompt"]}],
        "completion": [{"role": "assistant", "content": row["completion"]}]},
        desc="Wrapping plain-text rows in the chat format")


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align kto", chosen)

    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_before_loading(model_args, config)
    resume = training.resume_checkpoint(config)
    if config.per_device_train_batch_size < 2:
        raise ConfigError("KTO estimates its KL term from the other rows of a batch: "
                          "--per_device_train_batch_size must be at least 2")
    if config.loss_type != "apo_zero_unpaired" and config.train_sampling_strategy != "sequential":
        raise ConfigError(f"--loss_type {config.loss_type} pairs each row with its batch "
                          "neighbours for the KL term and needs --train_sampling_strategy "
                          "sequential (align shuffles the rows once, beforehand)")
    if config.sync_ref_model and model_args.use_peft:
        raise ConfigError("--sync_ref_model needs a separate reference model, which LoRA "
                          "does not keep; drop it or set --use_peft false")
    training.check_eval_source(script, config)
    model_path = training.resolve_model_spec(script.model, model_args)

    # --- Data -------------------------------------------------------------------------
    train_rows, eval_rows = training.train_and_eval_rows(
        script, config.seed, lambda specs: load_unpaired(specs, config.seed))
    tokenizer = training.load_tokenizer(model_path)
    train_rows = chat_format(train_rows, tokenizer)
    if eval_rows is not None:
        eval_rows = chat_format(eval_rows, tokenizer)
    good = sum(train_rows["label"])
    print(f"align kto: {len(train_rows)} training rows ({good} desirable, "
          f"{len(train_rows) - good} undesirable)"
          + (f", {len(eval_rows)} held out" if eval_rows is not None else "")
          + f" ({training.environment_note()})")

    # --- Model and trainer --------------------------------------------------------------
    from trl import KTOTrainer, get_peft_config

    model = training.load_causal_lm(model_path, model_args)
    trainer = KTOTrainer(model=model, ref_model=None, args=config, train_dataset=train_rows,
                         eval_dataset=eval_rows, processing_class=tokenizer,
                         peft_config=get_peft_config(model_args))
    if model_args.use_peft:
        trainer.model.print_trainable_parameters()

    # --- Train and save -----------------------------------------------------------------
    run = training.train_and_save(trainer, resume, evaluate=eval_rows is not None,
                                  tokenizer=tokenizer)
    if run is None:  # other ranks: the main process writes the rest
        return 0
    files = training.write_run(
        run, script, model_args, config, method="kto", train_data=train_rows,
        eval_data=eval_rows, unit="rows",
        metrics={"train_rows": len(train_rows), "train_desirable": good,
                 "eval_rows": len(eval_rows) if eval_rows is not None else 0},
        hyperparameters={
            "beta": config.beta, "loss_type": config.loss_type,
            "desirable_weight": config.desirable_weight,
            "undesirable_weight": config.undesirable_weight,
            "learning_rate": config.learning_rate, "epochs": config.num_train_epochs,
            "max_steps": config.max_steps, "steps": run.steps,
            "batch_size": config.per_device_train_batch_size,
            "max_length": config.max_length, "seed": config.seed,
            **({"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha}
               if model_args.use_peft else {})})
    training.print_run(run, files)
    return 0
