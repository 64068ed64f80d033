"""align orpo: odds-ratio preference optimisation, SFT and preference in one loss, no
reference model.

    align orpo --dataset pairs.jsonl [--model smollm2] [--output_dir runs/orpo]
               [--config recipe.yaml] [any ORPOConfig / ModelConfig flag]

EXPERIMENTAL: TRL 1.16 ships ``ORPOTrainer`` only in ``trl.experimental.orpo``, whose API
"may change or be removed in any release"; this command follows it and may change with it.

The loss is the negative log-likelihood of the chosen answer plus ``--beta`` (λ in the
paper) times the log odds-ratio of chosen over rejected. Any preference or ranked dataset
`align data` reads trains here; several ``--dataset`` are mixed (``PATH@0.5``, ``PATH@500``).

The chat template is rendered here, once, into text that ends on the EOS token: the
experimental trainer appends an EOS to any answer that does not end with one, so a template
that writes a newline after its end-of-turn token (ChatML does) would otherwise end every
answer with two.

Configuration: ``ScriptArguments`` below, ``trl.experimental.orpo.ORPOConfig`` and
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


@dataclass
class ScriptArguments(PairArguments):
    """Data and model for an ORPO run; training settings live in ORPOConfig."""


def _experimental():
    # align says "experimental" in its help and card; TRL's own import warning adds nothing
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOConfig, ORPOTrainer


def _defaults(values) -> training.Defaults:
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    has_eval = bool(values.eval_dataset) or values.eval_split > 0
    d = training.lora_cpu_defaults(f"runs/orpo-{name}", learning_rate=5e-5, has_eval=has_eval)
    d["max_length"] = (512, "prompt + answer tokens; longer answers are truncated")
    d["num_train_epochs"] = (1, "")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, ORPOConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig

    ORPOConfig, _ = _experimental()
    return training.parse_recipe_args((ScriptArguments, ORPOConfig, ModelConfig), argv, _defaults)


def render_pairs(dataset, tokenizer):
    """Conversational pairs -> text: the prompt with its generation prompt, each answer
    ending exactly on the EOS token (see the module help for why)."""
    if not isinstance(dataset[0]["prompt"], list):
        return dataset
    eos = tokenizer.eos_token

    def render(row):
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False,
                                               add_generation_prompt=True)
        out = {"prompt": prompt}
        for key in ("chosen", "rejected"):
            full = tokenizer.apply_chat_template(row["prompt"] + row[key], tokenize=False)
            answer = full[len(prompt):] if full.startswith(prompt) else full
            if eos and eos in answer:
                answer = answer[:answer.rindex(eos) + len(eos)]
            out[key] = answer
        return out
    return dataset.map(render, desc="Rendering the chat template")


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align orpo (experimental in TRL)", chosen)

    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_before_loading(model_args, config)
    resume = training.resume_checkpoint(config)
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
    print(f"align orpo: {len(train_pairs)} training pairs"
          + (f", {len(eval_pairs)} held out" if eval_pairs is not None else "")
          + f" ({training.environment_note()})")

    # --- Model and trainer --------------------------------------------------------------
    from trl import get_peft_config

    _, ORPOTrainer = _experimental()
    model = training.load_causal_lm(model_path, model_args)
    trainer = ORPOTrainer(model=model, args=config, train_dataset=train_pairs,
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
