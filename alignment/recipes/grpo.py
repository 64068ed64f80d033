"""align grpo: optimise a chat model against a reward model with GRPO (online RL).

    align grpo --reward_model runs/rm-smollm2 --dataset prompts.jsonl [--model smollm2]
               [--config recipe.yaml] [any GRPOConfig / ModelConfig flag]

One of align's two RLHF paths with a learned reward. TRL 1.16 has no PPOTrainer (PPO left
the stable API), so reward-model RL is GRPO here, or RLOO (`align rloo`): for every prompt
the policy samples ``--num_generations`` completions, the reward model scores each, and a
completion's advantage is its reward relative to its group (minus the group mean, divided
by the group's standard deviation unless ``--scale_rewards none``). TRL's GRPO default is
no KL penalty (``beta=0``); align defaults to ``--beta 0.04`` because a learned reward is
easy to exploit, and the reference is the base with its LoRA adapters switched off.

``--reward_model`` is a sequence-classification model folder, such as the one `align rm`
writes. ``--dataset`` is anything with prompts: a prompt list (JSONL rows
``{"prompt": ...}``), preference pairs or ranked data (their prompts), or conversations
(every turn before the last assistant reply). Several are mixed (``PATH@0.5``).

Configuration: ``ScriptArguments`` below, ``trl.GRPOConfig`` and ``trl.ModelConfig``;
dataclass defaults < align's working defaults (printed) < YAML ``--config`` < command line.

Writes: the adapter (or full model) and tokenizer, ``metrics.json``, ``README.md`` and
``training_curves.png`` (loss, mean reward, KL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from alignment import training
from alignment.errors import ConfigError


@dataclass
class ScriptArguments:
    """Prompts, policy and reward model; training settings live in GRPOConfig."""

    dataset: list[str] = field(default_factory=list, metadata={
        "help": "Prompts: a prompt list, preference/ranked data or conversations, in any format "
                "`align data` reads. Several are mixed; PATH@0.5 / PATH@500 sample."})
    reward_model: str | None = field(default=None, metadata={
        "help": "Reward model: a sequence-classification model folder (the output of "
                "`align rm`) or a hub id. Required. (TRL 1.16 has no PPOTrainer: RLOO and "
                "GRPO against a reward model are its reward-model RL.)"})
    model: str | None = field(default=None, metadata={
        "help": "Policy to train: a bundled model (smollm2), a local folder or a hub id. "
                "Default: smollm2."})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "Use at most this many prompts."})


def _defaults(values) -> training.Defaults:
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    d = training.lora_cpu_defaults(f"runs/grpo-{name}", learning_rate=1e-4, has_eval=False)
    d["num_generations"] = (2, "completions per group: the fewest GRPO allows, cheap on CPU")
    d["beta"] = (0.04, "KL penalty: a learned reward is easy to exploit (TRL's default is 0)")
    d["max_completion_length"] = (64, "short completions keep CPU generation fast")
    d["logging_steps"] = (1, "every step: RL curves are noisy and runs are short")
    d["num_train_epochs"] = (1, "")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, GRPOConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig, GRPOConfig

    return training.parse_recipe_args((ScriptArguments, GRPOConfig, ModelConfig), argv, _defaults)


def check_reward_model(spec: str | None) -> str:
    """The reward model's folder, refused early unless it is a one-output classifier."""
    from alignment.models import ModelNotAvailable, resolve_model

    if not spec:
        raise ConfigError("--reward_model is required: a sequence-classification model folder "
                          "(train one with `align rm --dataset pairs.jsonl`)")
    folder = Path(spec)
    if folder.is_dir() and (folder / "adapter_config.json").exists() and not (
            folder / "config.json").exists():
        raise ConfigError(f"{spec} is a LoRA adapter, not a model; pass the folder `align rm` "
                          "wrote (the adapter merged into its base), not its adapter/ subfolder")
    try:
        path = resolve_model(spec)
    except ModelNotAvailable as e:
        raise ConfigError(f"--reward_model: {e}") from None
    config_file = Path(path) / "config.json"
    if config_file.exists():
        config = json.loads(config_file.read_text())
        archs = config.get("architectures") or []
        labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)
        if not any(a.endswith("ForSequenceClassification") for a in archs) or labels != 1:
            raise ConfigError(f"{spec} is not a reward model (architectures {archs}, {labels} "
                              "labels); it would get a random score head. Train one with "
                              "`align rm` and pass its output folder")
    return path


def load_reward_model(path: str, dtype: str | None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=dtype if dtype in ("auto", None) else getattr(torch, dtype))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align grpo", chosen)

    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_before_loading(model_args, config)
    resume = training.resume_checkpoint(config)
    if config.use_vllm and not training.has_accelerator():
        raise ConfigError("--use_vllm needs a GPU; on CPU generation runs in transformers")
    if config.sync_ref_model and model_args.use_peft:
        raise ConfigError("--sync_ref_model needs a separate reference model, which LoRA does "
                          "not keep; drop it or set --use_peft false")
    reward_path = check_reward_model(script.reward_model)
    model_path = training.resolve_model_spec(script.model, model_args)

    # --- Data -------------------------------------------------------------------------
    prompts = training.take(training.load_prompts(script.dataset, config.seed),
                            script.max_train_samples)
    tokenizer = training.load_tokenizer(model_path)
    # generation must stop where decoding starts again, on the left
    tokenizer.padding_side = "left"
    if not tokenizer.chat_template:
        raise ConfigError(f"{model_path}: the tokenizer has no chat template to render prompts "
                          "with; train a chat model first (align sft)")
    print(f"align grpo: {len(prompts)} prompts x {config.num_generations} completions "
          f"({training.environment_note()})")

    # --- Models and trainer -------------------------------------------------------------
    from trl import GRPOTrainer, get_peft_config

    reward_model, reward_tokenizer = load_reward_model(reward_path, model_args.dtype)
    model = training.load_causal_lm(model_path, model_args)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_model, args=config,
                          train_dataset=prompts, processing_class=tokenizer,
                          reward_processing_classes=reward_tokenizer,
                          peft_config=get_peft_config(model_args))
    if model_args.use_peft:
        trainer.model.print_trainable_parameters()

    # --- Train ----------------------------------------------------------------------------
    totals = training.track_totals(trainer)
    result = trainer.train(resume_from_checkpoint=resume)

    # --- Save -------------------------------------------------------------------------
    out = Path(config.output_dir)
    trainer.save_model(str(out))
    trainer.save_state()
    if not training.writes_outputs(trainer):  # other ranks: the main process writes the rest
        return 0
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(out)
    metrics = training.final_metrics(trainer.state.log_history, result, None, totals)
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    metrics.update(prompts=len(prompts), reward_model=script.reward_model,
                   reward_first=rewards[0] if rewards else None,
                   reward_last=rewards[-1] if rewards else None)
    metrics_path = training.write_metrics(
        out, metrics, training.resolved_config(script, model_args, config))
    card = training.write_model_card(
        out, method="grpo", base_model=script.model or model_path,
        datasets={", ".join(script.dataset): len(prompts)},
        adapter=model_args.use_peft, metrics=metrics, hyperparameters={
            "reward_model": script.reward_model, "beta": config.beta,
            "num_generations": config.num_generations,
            "max_completion_length": config.max_completion_length,
            "temperature": config.temperature, "learning_rate": config.learning_rate,
            "steps": result.global_step, "batch_size": config.per_device_train_batch_size,
            "seed": config.seed,
            **({"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha}
               if model_args.use_peft else {})})
    card.write_text(card.read_text().replace("| dataset | pairs |", "| dataset | prompts |"))

    from alignment.report import render_run

    curves = render_run(out)
    print(f"\nalign grpo: {result.global_step} steps in {metrics['train_runtime_s']:.0f} s; "
          f"mean reward {metrics['reward_first']} -> {metrics['reward_last']}")
    print(f"  {'adapter' if model_args.use_peft else 'model'} + tokenizer: {out}")
    print(f"  metrics:     {metrics_path}")
    print(f"  model card:  {card}")
    print(f"  curves:      {curves}")
    return 0
