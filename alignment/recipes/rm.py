"""align rm: train a reward model (a scalar score per conversation) on preference pairs.

    align rm --dataset pairs.jsonl [--model smollm2] [--output_dir runs/rm]
             [--config recipe.yaml] [any RewardConfig / ModelConfig flag]

A causal LM gets a one-output classification head (``score``) and learns
r(prompt, chosen) > r(prompt, rejected) with TRL's ``RewardTrainer`` (Bradley-Terry loss).
Any preference or ranked dataset `align data` reads trains here; several ``--dataset``
are mixed (``PATH@0.5``, ``PATH@500``).

With LoRA (the default) the adapters are ``task_type=SEQ_CLS`` and the freshly initialised
``score`` head is trained in full (``modules_to_save=["score"]``); without that the head
would stay random.

Output: a **full** sequence-classification model folder (LoRA merged into the base) that
``AutoModelForSequenceClassification.from_pretrained(OUT)`` loads as is, which is what
``align rloo/grpo --reward_model OUT`` and reward-model scoring in pipelines expect; the
adapter itself is kept in ``OUT/adapter``. Also ``metrics.json`` with ``heldout_accuracy``
(fraction of held-out pairs where r(chosen) > r(rejected)), the model card ``README.md``,
``training_curves.png`` and ``eval_pairs.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignment import training
from alignment.errors import ConfigError
from alignment.recipes._args import PairArguments


@dataclass
class ScriptArguments(PairArguments):
    """Data and model for a reward-model run; training settings live in RewardConfig."""


def _defaults(values) -> training.Defaults:
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    d = training.lora_cpu_defaults(f"runs/rm-{name}", learning_rate=1e-4, has_eval=True)
    d["lora_task_type"] = ("SEQ_CLS", "a sequence-classification (reward) head")
    d["lora_modules_to_save"] = (["score"], "train the new reward head in full")
    d["max_length"] = (512, "TRL drops (not truncates) longer pairs")
    d["num_train_epochs"] = (1, "")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, RewardConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig, RewardConfig

    return training.parse_recipe_args((ScriptArguments, RewardConfig, ModelConfig), argv,
                                      _defaults)


def score_ids(model, ids: list[list[int]]) -> list[float]:
    """The reward of each token sequence, one at a time (no padding to get wrong)."""
    import torch

    model.eval()
    with torch.no_grad():
        return [model(input_ids=torch.tensor([x], device=model.device)).logits[0, 0].item()
                for x in ids]


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align rm", chosen)

    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_before_loading(model_args, config)
    resume = training.resume_checkpoint(config)
    if model_args.use_peft and model_args.lora_task_type != "SEQ_CLS":
        raise ConfigError(f"--lora_task_type {model_args.lora_task_type} cannot train a reward "
                          "head; use SEQ_CLS (the default here)")
    if model_args.use_peft and "score" not in (model_args.lora_modules_to_save or []):
        raise ConfigError("--lora_modules_to_save must include `score`: the reward head starts "
                          "random and LoRA alone would never train it")
    if not script.eval_dataset and script.eval_split <= 0:
        raise ConfigError("a reward model is judged by its held-out accuracy; give "
                          "--eval_dataset or --eval_split > 0")
    model_path = training.resolve_model_spec(script.model, model_args)

    # --- Data -------------------------------------------------------------------------
    train_pairs, eval_pairs = training.train_and_eval_pairs(script, config.seed)
    tokenizer = training.load_tokenizer(model_path)
    train_pairs = training.chat_format_pairs(train_pairs, tokenizer, script.wrap_plain_text)
    eval_pairs = training.chat_format_pairs(eval_pairs, tokenizer, script.wrap_plain_text)
    print(f"align rm: {len(train_pairs)} training pairs, {len(eval_pairs)} held out "
          f"({training.environment_note()})")

    # --- Model and trainer --------------------------------------------------------------
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import RewardTrainer, get_peft_config

    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    # seeded: the new score head is initialised at random
    torch.manual_seed(config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=1, dtype=dtype, revision=model_args.model_revision)
    trainer = RewardTrainer(model=model, args=config, train_dataset=train_pairs,
                            eval_dataset=eval_pairs, processing_class=tokenizer,
                            peft_config=get_peft_config(model_args))
    if model_args.use_peft:
        trainer.model.print_trainable_parameters()

    # --- Train; save the adapter, then the merged full model that scorers load --------
    run = training.train_and_save(
        trainer, resume, evaluate=True, tokenizer=tokenizer,
        save_model=Path(config.output_dir) / "adapter" if model_args.use_peft else False)
    if run is None:  # other ranks: the main process writes the rest
        return 0
    final = trainer.model
    if model_args.use_peft:
        final = trainer.model.merge_and_unload()
    final.config.pad_token_id = tokenizer.pad_token_id
    final.save_pretrained(run.out)

    # Exact held-out accuracy over the pairs TRL kept (it drops those over max_length);
    # the Trainer's eval_accuracy averages per-batch means instead.
    held = trainer.eval_dataset
    chosen_r = score_ids(final, held["chosen_ids"])
    rejected_r = score_ids(final, held["rejected_ids"])
    wins = [c > r for c, r in zip(chosen_r, rejected_r)]
    accuracy = sum(wins) / len(wins) if wins else None
    margin = sum(c - r for c, r in zip(chosen_r, rejected_r)) / len(wins) if wins else None
    files = training.write_run(
        run, script, model_args, config, method="rm", train_data=train_pairs,
        eval_data=eval_pairs, save_eval_pairs=True, adapter=False,
        metrics={"train_pairs": len(train_pairs), "eval_pairs": len(eval_pairs),
                 "heldout_pairs_scored": len(wins), "heldout_accuracy": accuracy,
                 "heldout_margin": margin},
        hyperparameters={
            "learning_rate": config.learning_rate, "epochs": config.num_train_epochs,
            "max_steps": config.max_steps, "steps": run.steps,
            "batch_size": config.per_device_train_batch_size,
            "center_rewards_coefficient": config.center_rewards_coefficient,
            "max_length": config.max_length, "seed": config.seed,
            **({"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha,
                "lora_modules_to_save": model_args.lora_modules_to_save,
                "merged": True} if model_args.use_peft else {})})
    files.card.write_text(
        files.card.read_text()
        .replace("AutoModelForCausalLM", "AutoModelForSequenceClassification")
        .replace("## Loading", f"## Held-out accuracy\n\nr(chosen) > r(rejected) on "
                 f"{len(wins)} held-out pairs: **{accuracy:.3f}** (mean margin "
                 f"{margin:.3f}).\n\n## Loading"
                 if wins else "## Loading")
        + "\nThe score of a conversation is `model(**tokenizer.apply_chat_template(messages, "
          "return_dict=True, return_tensors=\"pt\")).logits[0, 0]`; this folder is what "
          "`align rloo/grpo --reward_model` takes.\n")
    training.print_run(
        run, files, saved="reward model (merged) + tokenizer",
        summary=f"; held-out accuracy {accuracy if accuracy is not None else float('nan'):.3f} "
                f"on {len(wins)} pairs")
    return 0
