"""What `align rloo` and `align grpo` share: a policy optimised online against its rewards.

The two commands differ only in TRL's config and trainer, how each computes a completion's
advantage, and a few working defaults; everything else (the refusals, prompts from any
dataset, the reward model and the verifier rewards, the files a run leaves behind) is
written once, here. Each command's module keeps its own ``ScriptArguments`` subclass so
that ``--help`` names that command and shows its description.

Rewards are TRL reward functions: the reward model (``--reward_model``) first, then one
function per ``--verifier`` (programmatic checks of :mod:`alignment.verifiers`, RLVR),
weighted by TRL's own ``--reward_weights`` in that order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from alignment import training, verifiers
from alignment.errors import ConfigError
from alignment.recipes._args import TrainArguments


@dataclass
class ScriptArguments(TrainArguments):
    """Prompts, policy and reward model; training settings live in the method's config."""

    reward_model: str | None = field(default=None, metadata={
        "help": "Reward model: a sequence-classification model folder (the output of "
                "`align rm`) or a hub id. Required unless --verifier is given. (TRL 1.16 has "
                "no PPOTrainer: RLOO and GRPO against a reward model are its reward-model RL.)"})
    verifier: list[str] = field(default_factory=list, metadata={
        # repeated flags add up, as the help says, instead of the last one winning
        "action": "extend",
        "help": "Programmatic rewards (RLVR), each scoring a completion in [0, 1]: "
                "NAME[:key=value,...] (e.g. max_words:limit=40), package.module:function"
                "[:key=value,...] for your own, or `row` for the specs each prompt carries in "
                "its `verifiers` column (prompts without any get no score from it). "
                "Repeatable: --verifier A --verifier B, or --verifier A B; the command line "
                "adds to a YAML list. One TRL reward function each, logged as "
                "rewards/verifier_NAME/mean; --reward_weights gives one weight per function, "
                "the reward model first."})


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
                          "(train one with `align rm --dataset pairs.jsonl`), unless "
                          "--verifier gives a programmatic reward")
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


class VerifierReward:
    """A TRL reward function: one verifier spec on every completion, or (``spec`` None,
    for ``--verifier row``) the specs of each completion's prompt, their mean score with
    partial credit, and None (not applicable) where a prompt has none.

    A class rather than a closure so that it pickles; TRL reads its ``__name__`` for the
    ``rewards/<name>/mean`` metrics."""

    def __init__(self, name: str, spec: dict | None):
        self.__name__, self.spec = name, spec

    def __setstate__(self, state: dict) -> None:
        # a user's `module:function` is registered when loaded; a fresh process loads it
        self.__dict__.update(state)
        if self.spec is not None and ":" in self.spec["name"]:
            verifiers.load(self.spec["name"])

    def __call__(self, prompts: list, completions: list, **columns) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        if self.spec is not None:
            return [verifiers.run(self.spec, t) for t in texts]
        if "verifiers" not in columns:
            raise ConfigError("--verifier row: the batch has no `verifiers` column; keep "
                              "--remove_unused_columns false")
        # TRL 1.16 reads None as "not applicable": NaN, left out of its nan-aware means
        # and sums; a completion that no reward function scores gets advantage 0
        return [verifiers.score(specs, t)["score"] if specs else None
                for specs, t in zip(columns["verifiers"], texts, strict=True)]


def completion_text(completion: str | list[dict]) -> str:
    """The text of a completion: the assistant turns of a conversational one."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role") == "assistant")


def verifier_rewards(refs: list[str]) -> list[VerifierReward]:
    """One reward function per ``--verifier``, checked before anything loads.

    Names are ``verifier_<name>`` (the function's name for ``module:function``), with
    ``#2``, ``#3`` for repeats, and ``verifier_row`` for ``row``."""
    if refs.count("row") > 1:
        raise ConfigError("--verifier row is given twice; it already applies every spec a "
                          "prompt carries")
    specs = [None if ref == "row" else verifiers.parse_spec(ref) for ref in refs]
    short = [{"name": "row" if s is None else s["name"].rsplit(":", 1)[-1]} for s in specs]
    return [VerifierReward(f"verifier_{key}", spec)
            for key, spec in zip(verifiers.result_keys(short), specs)]


def check_reward_weights(weights: list[float] | None, names: list[str]) -> None:
    if weights is not None and len(weights) != len(names):
        raise ConfigError(f"--reward_weights has {len(weights)} value(s) but there are "
                          f"{len(names)} reward functions ({', '.join(names)}); give one "
                          "weight per function, in that order")


def check_row_specs(prompts, rewards: list[VerifierReward]) -> None:
    """``row`` needs prompts with specs; specs nobody asked for are pointed out."""
    carried = "verifiers" in prompts.column_names and any(prompts["verifiers"])
    if any(r.spec is None for r in rewards):
        if not carried:
            raise ConfigError("--verifier row: no prompt carries a `verifiers` list; add one "
                              'to the prompt rows ({"prompt": ..., "verifiers": [{"name": '
                              '"max_words", "params": {"limit": 40}}]}) or name the checks')
    elif carried:
        print("note: the prompts carry `verifiers`, which reward nothing without "
              "--verifier row")


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
    rewards = verifier_rewards(script.verifier)
    reward_path = check_reward_model(script.reward_model) if (
        script.reward_model or not rewards) else None
    names = ([Path(reward_path).name] if reward_path else []) + [r.__name__ for r in rewards]
    check_reward_weights(config.reward_weights, names)
    if config.remove_unused_columns and any(r.spec is None for r in rewards):
        raise ConfigError("--verifier row reads each prompt's `verifiers` column, which "
                          "--remove_unused_columns true drops; leave it false")
    model_path = training.resolve_model_spec(script.model, model_args)

    # --- Data -------------------------------------------------------------------------
    prompts = training.take(training.load_prompts(script.dataset, config.seed),
                            script.max_train_samples)
    check_row_specs(prompts, rewards)
    tokenizer = training.load_tokenizer(model_path)
    # generation must stop where decoding starts again, on the left
    tokenizer.padding_side = "left"
    if not tokenizer.chat_template:
        raise ConfigError(f"{model_path}: the tokenizer has no chat template to render prompts "
                          "with; train a chat model first (align sft)")
    print(f"align {method}: {len(prompts)} prompts x {config.num_generations} completions "
          f"({training.environment_note()}); rewards: {', '.join(names)}"
          + (f", weights {config.reward_weights}" if config.reward_weights else ""))

    # --- Models and trainer -------------------------------------------------------------
    from trl import get_peft_config

    funcs, processors = list(rewards), [None] * len(rewards)
    if reward_path:
        reward_model, reward_tokenizer = load_reward_model(reward_path, model_args.dtype)
        funcs, processors = [reward_model, *funcs], [reward_tokenizer, *processors]
    model = training.load_causal_lm(model_path, model_args)
    trainer = trainer_class(model=model, reward_funcs=funcs, args=config,
                            train_dataset=prompts, processing_class=tokenizer,
                            reward_processing_classes=processors,
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
    history = trainer.state.log_history
    totals = [e["reward"] for e in history if "reward" in e]
    first, last = (totals[0], totals[-1]) if totals else (None, None)
    per_function = {}
    for r in rewards:
        key = f"rewards/{r.__name__}/mean"
        seen = [e[key] for e in history if key in e]
        per_function[r.__name__] = {"first": seen[0], "last": seen[-1]} if seen else None
    files = training.write_run(
        run, script, model_args, config, method=method, train_data=prompts, eval_data=None,
        unit="prompts",
        metrics={"prompts": len(prompts), "reward_model": script.reward_model,
                 "verifiers": script.verifier, "reward_functions": names,
                 "reward_weights": config.reward_weights,
                 "reward_first": first, "reward_last": last,
                 "verifier_rewards": per_function},
        hyperparameters={
            "reward_model": script.reward_model,
            **({"verifiers": ", ".join(script.verifier)} if script.verifier else {}),
            **({"reward_weights": config.reward_weights} if config.reward_weights else {}),
            "beta": config.beta,
            "num_generations": config.num_generations,
            "max_completion_length": config.max_completion_length,
            "temperature": config.temperature, "learning_rate": config.learning_rate,
            "steps": run.steps, "batch_size": config.per_device_train_batch_size,
            "seed": config.seed,
            **({"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha}
               if model_args.use_peft else {})})
    training.print_run(run, files, summary=f"; mean reward {first} -> {last}")
    return 0
