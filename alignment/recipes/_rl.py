"""What `align rloo` and `align grpo` share: a policy optimised online against a reward model.

The two commands differ only in TRL's config and trainer, how each computes a completion's
advantage, and a few working defaults; everything else (the refusals, prompts from any
dataset, the reward model, the files a run leaves behind) is written once, here. Each
command's module keeps its own ``ScriptArguments`` subclass so that ``--help`` names that
command and shows its description.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from alignment import training
from alignment.errors import ConfigError


@dataclass
class ScriptArguments:
    """Prompts, policy and reward model; training settings live in the method's config."""

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


def defaults(method: str, values, own: training.Defaults) -> training.Defaults:
    """The working defaults of both methods, with ``own`` (the method's) after LoRA's."""
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    d = training.lora_cpu_defaults(f"runs/{method}-{name}", learning_rate=1e-4, has_eval=False)
    d.update(own)
    d["max_completion_length"] = (64, "short completions keep CPU generation fast")
    d["logging_steps"] = (1, "every step: RL curves are noisy and runs are short")
    d["num_train_epochs"] = (1, "")
    return d


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


def train(method: str, trainer_class, script, config, model_args,
          chosen: training.Defaults) -> int:
    """Run ``align <method>`` on parsed arguments, with TRL's ``trainer_class``."""
    training.print_defaults(f"align {method}", chosen)

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
    print(f"align {method}: {len(prompts)} prompts x {config.num_generations} completions "
          f"({training.environment_note()})")

    # --- Models and trainer -------------------------------------------------------------
    from trl import get_peft_config

    reward_model, reward_tokenizer = load_reward_model(reward_path, model_args.dtype)
    model = training.load_causal_lm(model_path, model_args)
    trainer = trainer_class(model=model, reward_funcs=reward_model, args=config,
                            train_dataset=prompts, processing_class=tokenizer,
                            reward_processing_classes=reward_tokenizer,
                            peft_config=get_peft_config(model_args))
    if model_args.use_peft:
        trainer.model.print_trainable_parameters()

    # --- Train and save -----------------------------------------------------------------
    run = training.train_and_save(trainer, resume, evaluate=False)
    if run is None:  # other ranks: the main process writes the rest
        return 0
    # left padding was for generation; save the tokenizer as it came
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(run.out)
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    first, last = (rewards[0], rewards[-1]) if rewards else (None, None)
    files = training.write_run(
        run, script, model_args, config, method=method, train_data=prompts, eval_data=None,
        unit="prompts",
        metrics={"prompts": len(prompts), "reward_model": script.reward_model,
                 "reward_first": first, "reward_last": last},
        hyperparameters={
            "reward_model": script.reward_model, "beta": config.beta,
            "num_generations": config.num_generations,
            "max_completion_length": config.max_completion_length,
            "temperature": config.temperature, "learning_rate": config.learning_rate,
            "steps": run.steps, "batch_size": config.per_device_train_batch_size,
            "seed": config.seed,
            **({"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha}
               if model_args.use_peft else {})})
    training.print_run(run, files, summary=f"; mean reward {first} -> {last}")
    return 0
