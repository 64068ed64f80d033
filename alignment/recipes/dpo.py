"""align dpo: direct preference optimisation of a chat model on prompt/chosen/rejected pairs.

    align dpo --dataset pairs.jsonl [--model smollm2] [--output_dir runs/dpo]
              [--config alignment/recipes/dpo_cpu.yaml] [any DPOConfig / ModelConfig flag]

Configuration comes from three TRL dataclasses: ``ScriptArguments`` below (data and
model), ``trl.DPOConfig`` (training, including ``beta``, ``loss_type``, ``max_length``
and ``precompute_ref_log_probs``) and ``trl.ModelConfig`` (dtype, LoRA, quantisation).
Precedence: dataclass defaults < align's working defaults (printed at start) < YAML
``--config`` < command line. Unknown YAML keys are an error.

The model is named with ``--model`` (a bundled name, a local folder or a hub id);
``--model_name_or_path`` is accepted as an alias. With LoRA (the default) or a soft prompt
(``--peft prompt-tuning``) the reference model is the same base with its adapter switched
off, so only one copy is in memory.
Its log-probs of every pair are computed once, before training, and cached on disk
(``--reference_cache``): a run on the same pairs with another ``beta`` or ``loss_type``,
or a resumed one, loads them instead of running the reference again.

Writes to the output dir: the adapter (or full model) and tokenizer, ``metrics.json``,
a model card ``README.md``, ``training_curves.png`` and ``eval_pairs.jsonl`` (the pairs
held out, ready for ``align eval``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alignment import reference_cache, training
from alignment.errors import ConfigError
from alignment.recipes._args import PairArguments, PeftArguments


@dataclass
class ScriptArguments(PairArguments, PeftArguments):
    """Data and model for a preference-tuning run; training settings live in DPOConfig."""

    init_adapter: str | None = field(default=None, metadata={
        "help": "Continue training this LoRA adapter (a run folder of an earlier `align dpo` "
                "on the same base) instead of a fresh one; its rank, targets and weights are "
                "kept, the reference stays the base with the adapter off. `align loop` uses "
                "it to go on from the previous round."})
    share_prompt: bool = field(default=True, metadata={
        "help": "Compute each pair as one sequence, the prompt once and then both answers, "
                "with a mask keeping the answers apart: the loss of TRL's layout (which runs "
                "the prompt twice and pads the shorter answer) with less compute. Used with "
                "sdpa or eager attention; false keeps TRL's layout."})
    reference_cache: str = field(default="on", metadata={
        "help": "Compute the reference model's log-probs of every pair once, before training, "
                "and keep them on disk, keyed by the reference weights, the pairs' tokens and "
                "the truncation settings: another run on the same pairs (another beta or "
                "loss_type, a resumed run) loads them. `on` keeps them in "
                "ALIGN_HOME/reference, a folder keeps them there, `off` lets TRL run the "
                "reference on every batch (or once, with --precompute_ref_log_probs)."})


def _defaults(values) -> training.Defaults:
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    has_eval = bool(values.eval_dataset) or values.eval_split > 0
    # Rate, epochs, beta and target modules come from a measured sweep on 58 on-policy pairs
    # of the bundled 135M model (README, "Choosing the loop's DPO settings"): 5e-5 for one
    # epoch on q/v left the policy where it started; these gave +13 points held out. The
    # loss stays plain DPO (the SFT term the loop adds changes what the loss means).
    d = training.lora_cpu_defaults(f"runs/dpo-{name}", learning_rate=5e-4, has_eval=has_eval)
    d["learning_rate"] = (5e-4, "LoRA on small preference sets: 5e-5 moved nothing in the sweep")
    d["beta"] = (0.5, "a tighter hold on the reference than TRL's 0.1, for the higher rate")
    if values.peft == "prompt-tuning":
        d["learning_rate"] = (1e-2, "suits a soft prompt (its few embeddings move slowly)")
    if not training.has_accelerator():
        # DPO pads each pair's chosen and rejected sequences to one length with the rest of
        # the batch; a batch of one pair pads only the shorter answer of the two, and holds
        # a quarter of the activations of four, which is what lets gradient checkpointing
        # stay off (about a third less compute) without using more memory than TRL's
        # checkpointed batches of two. Accumulation keeps 4 pairs per optimizer step.
        d["per_device_train_batch_size"] = (1, "one pair a step: the least padding and memory")
        d["gradient_accumulation_steps"] = (4, "4 pairs per optimizer step")
        # Adapters on every linear layer (the shared LoRA default) cost about 40% more CPU
        # time per token than on q/v only; in the sweep they tripled the held-out gain.
    d["max_length"] = (512, "prompt + completion tokens; longer pairs are truncated")
    d["num_train_epochs"] = (2, "two passes over a few hundred pairs")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, DPOConfig, ModelConfig) and the working defaults applied."""
    from trl import DPOConfig, ModelConfig

    return training.parse_recipe_args((ScriptArguments, DPOConfig, ModelConfig), argv, _defaults)


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align dpo", chosen)

    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_peft_choice(script, model_args)
    training.check_before_loading(model_args, config)
    if config.sync_ref_model and model_args.use_peft:
        raise ConfigError("--sync_ref_model needs a separate reference model, which LoRA "
                          "does not keep; drop it or set --use_peft false")
    training.check_eval_source(script, config)
    cache = reference_cache.folder(script.reference_cache)
    if cache is not None and (reason := reference_cache.unsupported(config)) is not None:
        print(f"align dpo: reference log-probs not cached ({reason})")
        cache = None
    model_path = training.resolve_model_spec(script.model, model_args)
    resume = training.resume_checkpoint(config)
    if script.init_adapter and script.peft == "prompt-tuning":
        raise ConfigError("--init_adapter continues a LoRA adapter with its own settings; "
                          "drop --peft prompt-tuning (or --init_adapter)")
    if script.init_adapter:
        training.check_init_adapter(script.init_adapter, model_path, model_args)

    # --- Data -------------------------------------------------------------------------
    train_pairs, eval_pairs = training.train_and_eval_pairs(script, config.seed)
    tokenizer = training.load_tokenizer(model_path)
    train_pairs = training.chat_format_pairs(train_pairs, tokenizer, script.wrap_plain_text)
    if eval_pairs is not None:
        eval_pairs = training.chat_format_pairs(eval_pairs, tokenizer, script.wrap_plain_text)
    print(f"align dpo: {len(train_pairs)} training pairs"
          + (f", {len(eval_pairs)} held out" if eval_pairs is not None else "")
          + f" ({training.environment_note()})")

    # --- Model and trainer --------------------------------------------------------------
    from trl import DPOTrainer

    model = training.load_causal_lm(model_path, model_args)
    if script.init_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, script.init_adapter, is_trainable=True)
        peft_config = None  # the adapter brings its own
    else:
        training.resolve_lora_targets(model_args, model)
        peft_config = training.peft_config(script, model_args, model_path)
    # ref_model=None: with LoRA TRL computes the reference log-probs on this same model
    # with the adapters disabled; for a full fine-tune it loads a second copy. With the
    # cache the log-probs are attached after the trainer is built (see reference_cache),
    # so TRL must not compute them in __init__ as well.
    if cache is not None:
        config.precompute_ref_log_probs = False
    trainer = DPOTrainer(model=model, ref_model=None, args=config,
                         train_dataset=train_pairs, eval_dataset=eval_pairs,
                         processing_class=tokenizer, peft_config=peft_config)
    if script.share_prompt:
        from alignment import shared_prompt

        reason = shared_prompt.enable(trainer)
        print("align dpo: " + ("each pair runs as one sequence (prompt computed once)" if reason is None
                              else f"pairs use TRL's layout ({reason})"))
    # after enable(), so that a missing entry is computed with the faster forward too
    references = ([] if cache is None
                  else reference_cache.attach(trainer, cache, model_path, model_args))
    for entry in references:
        print("align dpo: " + entry.describe())
    if model_args.use_peft:
        trainer.model.print_trainable_parameters()

    # --- Train and save -----------------------------------------------------------------
    run = training.train_and_save(trainer, resume, evaluate=eval_pairs is not None,
                                  tokenizer=tokenizer)
    if run is None:  # other ranks: the main process writes the rest
        return 0
    files = training.write_run(
        run, script, model_args, config, method="dpo", train_data=train_pairs,
        eval_data=eval_pairs, save_eval_pairs=True,
        metrics={"train_pairs": len(train_pairs),
                 "eval_pairs": len(eval_pairs) if eval_pairs is not None else 0,
                 **({"reference_cache": {e.split: e.as_dict() for e in references}}
                    if references else {})},
        hyperparameters={
            "beta": config.beta, "loss_type": config.loss_type,
            "learning_rate": config.learning_rate, "epochs": config.num_train_epochs,
            "max_steps": config.max_steps, "steps": run.steps,
            "batch_size": config.per_device_train_batch_size,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "max_length": config.max_length, "bf16": config.bf16, "seed": config.seed,
            **({"init_adapter": script.init_adapter} if script.init_adapter else {}),
            **training.peft_hyperparameters(script, model_args)})
    held_out = run.out / "eval_pairs.jsonl"
    training.print_run(run, files, notes=[
        f"held out:    {held_out}  (align eval --model {run.out} --dataset {held_out})"]
        if eval_pairs is not None else [])
    return 0
