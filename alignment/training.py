"""What every training recipe shares: argument parsing, working defaults, loading, artefacts.

A recipe (``alignment/recipes/<method>.py``) reads top to bottom and calls these helpers
for the parts that would otherwise be copied word for word into each of them: TRL's
config parsing with our defaults layered in, the refusals that must happen before a model
loads, tokenizer/model loading, the "chat template exactly once" normalisation of pairs,
and the end of every run: train, save, and the files a finished run leaves behind
(``metrics.json``, ``README.md``, the curves), so that a recipe states only what is its own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alignment.errors import ConfigError, DataError

# ---------------------------------------------------------------------------------------
# Hardware


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def cpu_has_fast_bf16() -> bool:
    """True only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    Elsewhere PyTorch emulates bf16 on CPU and mixed precision runs slower than fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, and fp32 is always correct
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# ---------------------------------------------------------------------------------------
# Configuration: dataclass defaults < align's working defaults < YAML < command line

Defaults = dict[str, tuple[Any, str]]  # field -> (value, why)


def parse_recipe_args(types: Sequence[type], argv: Sequence[str],
                      defaults: Callable[[argparse.Namespace], Defaults]
                      ) -> tuple[tuple, Defaults]:
    """Parse ``argv`` (with an optional ``--config recipe.yaml``) into ``types``.

    ``defaults(values)`` proposes align's working defaults from a first look at the
    user's settings (a flat namespace of every field); only fields the user did not set,
    in the YAML or on the command line, take them. Returns the dataclass instances and
    the defaults that were applied. ``--help`` and argparse's own errors raise
    SystemExit, as with any CLI.
    """
    from trl import TrlParser

    argv = list(argv)
    # the recipe module (where ScriptArguments lives) names the command and describes it
    recipe = sys.modules[types[0].__module__]
    parser = TrlParser(list(types), prog=f"align {recipe.__name__.rsplit('.', 1)[-1]}",
                       description=recipe.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    config = _read_config(parser, argv)
    explicit = set(config) | _flags_given(parser, argv)
    # A first look without building the dataclasses: their __post_init__ validates
    # against library defaults (bf16 on a CPU, say) that our defaults are about to replace.
    parser.set_defaults_with_config(**{k: v for k, v in config.items() if k != "env"})
    rest = [a for i, a in enumerate(argv)
            if a != "--config" and (i == 0 or argv[i - 1] != "--config")]
    values, _ = parser.parse_known_args(rest)
    chosen = {k: v for k, v in defaults(values).items() if k not in explicit}
    parser.set_defaults(**{k: value for k, (value, _) in chosen.items()})
    return _parse(parser, argv), chosen


def _read_config(parser, argv: list[str]) -> dict[str, Any]:
    if "--config" not in argv:
        return {}
    i = argv.index("--config")
    if i + 1 >= len(argv):
        raise ConfigError("--config needs a path to a YAML recipe")
    path = Path(argv[i + 1])
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of field: value")
    known = {action.dest for action in parser._actions} | {"env"}
    unknown = sorted(set(config) - known)
    if unknown:
        # TRL only rejects these at the end, in a message that names no file; a misspelt
        # key silently falling back to a default is the bug this guards against.
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; every key must be a field of "
            f"{', '.join(t.__name__ for t in parser.dataclass_types)} "
            "(see `--help` for the list)")
    return config


def _flags_given(parser, argv: list[str]) -> set[str]:
    by_option = {opt: action.dest for action in parser._actions for opt in action.option_strings}
    return {by_option[tok.split("=", 1)[0]] for tok in argv
            if tok.startswith("--") and tok.split("=", 1)[0] in by_option}


def _parse(parser, argv: list[str]) -> tuple:
    try:
        return tuple(parser.parse_args_and_config(list(argv)))
    except ValueError as e:  # unknown flags, and TRL/transformers' own config validation
        raise ConfigError(str(e)) from None


def print_defaults(command: str, chosen: Defaults) -> None:
    if not chosen:
        return
    width = max(len(f"{k}={v!r}") for k, (v, _) in chosen.items())
    print(f"{command}: working defaults (set any of them in the YAML or on the command line "
          "to override):")
    for key, (value, why) in chosen.items():
        print(f"  {f'{key}={value!r}':<{width}}  {why}")


def lora_cpu_defaults(output_dir: str, learning_rate: float, has_eval: bool) -> Defaults:
    """Defaults shared by every LoRA recipe; ``has_eval`` turns on periodic evaluation."""
    d: Defaults = {}
    if not has_accelerator():
        fast = cpu_has_fast_bf16()
        d["bf16"] = (fast, "this CPU has native bf16" if fast else
                     "this CPU has no native bf16 (avx512_bf16/amx), so fp32 is faster")
        d["gradient_checkpointing"] = (False, "small models on CPU: recomputing costs more "
                                              "time than the memory it saves")
        d["dataloader_num_workers"] = (0, "worker processes only compete for CPU cores")
        d["dataloader_pin_memory"] = (False, "no GPU to pin memory for")
        # Without it transformers treats a CPU-only `accelerate launch` as N separate
        # single-process runs; with it the processes join one gloo group (real DDP).
        d["use_cpu"] = (True, "no GPU: train on the CPU (and under `accelerate launch`, "
                              "as one distributed job over gloo)")
    d["use_peft"] = (True, "LoRA: train adapters, keep the base frozen")
    d["lora_r"] = (16, "LoRA rank")
    d["lora_alpha"] = (32, "LoRA scale (2 x rank)")
    d["lora_target_modules"] = (["all-linear"], "adapt every linear layer but the LM head")
    if not has_accelerator():
        # with dropout PEFT keeps a dropped-out copy of every adapted layer's input for the
        # backward pass; at 0 it skips it (a short CPU run has little to over-fit anyway)
        d["lora_dropout"] = (0.0, "no dropped-out copies of the activations to keep")
    d["learning_rate"] = (learning_rate, "suits LoRA adapters")
    d["per_device_train_batch_size"] = (4, "small batches keep a CPU step short")
    d["per_device_eval_batch_size"] = (4, "")
    d["report_to"] = (["none"], "no experiment tracker unless asked for")
    d["logging_steps"] = (5, "enough points for the training curves")
    d["save_strategy"] = ("steps", "")
    d["save_steps"] = (100, "")
    d["save_total_limit"] = (1, "keep only the latest checkpoint")
    if has_eval:
        d["eval_strategy"] = ("steps", "evaluate on the held-out pairs during training")
        d["eval_steps"] = (25, "")
    d["output_dir"] = (output_dir, "")
    return d


def check_before_loading(model_args, training_args) -> None:
    """Refuse configurations that cannot work, before any weights are read."""
    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    if quantized and not has_accelerator():
        raise ConfigError(
            "--load_in_4bit/--load_in_8bit (QLoRA) is a GPU feature and is refused on CPU: "
            "bitsandbytes' 4-bit CPU kernels lose the LoRA gradients after any no-grad forward "
            "in the same process (the reference pass of DPO is one), so training would silently "
            "not learn. On CPU train plain LoRA (the default): drop --load_in_4bit.")
    if quantized and not model_args.use_peft:
        raise ConfigError("a quantized base cannot be fine-tuned in full; add --use_peft true "
                          "(LoRA) or drop --load_in_4bit/--load_in_8bit")
    if training_args.bf16 and training_args.fp16:
        raise ConfigError("--bf16 and --fp16 are exclusive; pick one")


def check_peft_choice(script, model_args) -> None:
    """Make ``--peft`` and ``--use_peft`` agree, and refuse prompt-tuning settings that cannot work.

    ``--peft lora`` (the default) leaves ``--use_peft`` as it is, so ``--use_peft false``
    stays the full fine-tune it always was; ``--peft none`` is that same switch spelt the
    other way. ``--peft prompt-tuning`` keeps the base frozen too, so it counts as PEFT
    wherever the recipes ask (one model in memory, the reference = adapter off).
    """
    from alignment.recipes._args import PEFT_METHODS

    if script.peft not in PEFT_METHODS:
        raise ConfigError(f"--peft {script.peft}: unknown; choose one of {', '.join(PEFT_METHODS)}")
    if script.peft == "none":
        model_args.use_peft = False
    elif script.peft == "prompt-tuning" and not model_args.use_peft:
        raise ConfigError("--peft prompt-tuning trains a soft prompt on a frozen base; it "
                          "contradicts --use_peft false (a full fine-tune); drop one of them")
    if script.peft != "prompt-tuning":
        if script.prompt_tuning_init_text:
            raise ConfigError("--prompt_tuning_init_text applies to --peft prompt-tuning only")
        return
    if not isinstance(script.num_virtual_tokens, int) or script.num_virtual_tokens < 1:
        raise ConfigError(f"--num_virtual_tokens must be a whole number >= 1, got "
                          f"{script.num_virtual_tokens}")
    if script.prompt_tuning_init_text is not None and not script.prompt_tuning_init_text.strip():
        raise ConfigError("--prompt_tuning_init_text is empty; give some text, or drop it for "
                          "a random start")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        raise ConfigError("--peft prompt-tuning on a quantized base is not supported here; "
                          "drop --load_in_4bit/--load_in_8bit")


def peft_config(script, model_args, model_path: str):
    """The PEFT config the trainer wraps the model with: None for a full fine-tune, a
    ``PromptTuningConfig`` for ``--peft prompt-tuning``, else TRL's LoRA config."""
    if not model_args.use_peft:
        return None
    if script.peft != "prompt-tuning":
        from trl import get_peft_config

        return get_peft_config(model_args)
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    text = script.prompt_tuning_init_text
    return PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=script.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=text or None,
        # the text is tokenised with the model's own tokenizer, as PEFT reloads it
        tokenizer_name_or_path=model_path if text else None)


def peft_hyperparameters(script, model_args) -> dict:
    """What the model card records about the trained parameters."""
    if not model_args.use_peft:
        return {}
    if script.peft == "prompt-tuning":
        return {"peft": "prompt-tuning", "num_virtual_tokens": script.num_virtual_tokens,
                "prompt_tuning_init": "text" if script.prompt_tuning_init_text else "random"}
    return {"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha,
            "lora_target_modules": model_args.lora_target_modules}


def resolve_model_spec(script_model: str | None, model_args) -> str:
    """``--model`` is the documented flag; ``--model_name_or_path`` is accepted as its alias."""
    from alignment.models import ModelNotAvailable, resolve_model

    other = model_args.model_name_or_path
    if script_model and other and script_model != other:
        raise ConfigError(f"--model {script_model} and --model_name_or_path {other} disagree; "
                          "give only --model")
    try:
        path = resolve_model(script_model or other)
    except ModelNotAvailable as e:
        raise ConfigError(str(e)) from None
    if Path(path).exists():  # recorded in adapter_config.json: must work from any folder
        path = str(Path(path).resolve())
    model_args.model_name_or_path = path
    return path


# ---------------------------------------------------------------------------------------
# Data


def load_pairs(specs: Sequence[str], seed: int = 0):
    """TRL prompt/chosen/rejected pairs from one dataset or a mixture of ``PATH[@WEIGHT]``."""
    from alignment.data import load_mixture, load_preferences, parse_mixture_spec

    if not specs:
        raise ConfigError("no dataset given: pass --dataset PATH (preference pairs or ranked "
                          "completions in any format `align data inspect` reads)")
    if len(specs) == 1 and parse_mixture_spec(specs[0])[1] is None:
        dataset = load_preferences(specs[0], seed=seed)
    else:
        dataset = load_mixture(list(specs), "preference", seed)
    check_pairs(dataset, ", ".join(specs))
    return dataset


def check_pairs(dataset, where: str) -> None:
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in dataset.column_names]
    if missing:
        raise DataError(where, f"not preference pairs: columns {missing} are missing "
                               f"(has {dataset.column_names})", field=missing[0])
    if len(dataset) == 0:
        raise DataError(where, "no rows")
    kinds = {c: isinstance(dataset[0][c], list) for c in ("prompt", "chosen", "rejected")}
    if len(set(kinds.values())) != 1:
        raise DataError(where, "mixes plain-text and conversational fields "
                               f"({kinds}); all three must be strings or all message lists", row=1)


def chat_format_pairs(dataset, tokenizer, wrap_plain_text: bool = True):
    """Make sure every pair passes through the chat template exactly once.

    Conversational pairs are left for TRL to template. Plain-text pairs are wrapped as a
    user turn and an assistant reply when the tokenizer has a chat template, so the model
    is trained in the format it is prompted with. Text that is already templated (or
    ``wrap_plain_text=False``) is trained as raw text; then a leading BOS string is dropped
    when the tokenizer adds its own, and anything after a final EOS in a completion is
    dropped because TRL appends one — otherwise both would appear twice.
    """
    first = dataset[0]
    if isinstance(first["prompt"], list):
        return dataset
    if wrap_plain_text and tokenizer.chat_template and not _is_templated(first["prompt"], tokenizer):
        def wrap(row):
            return {"prompt": [{"role": "user", "content": row["prompt"]}],
                    "chosen": [{"role": "assistant", "content": row["chosen"]}],
                    "rejected": [{"role": "assistant", "content": row["rejected"]}]}
        return dataset.map(wrap, desc="Wrapping plain-text pairs in the chat format")

    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    adds_bos = bos is not None and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]

    def strip(row):
        prompt = row["prompt"]
        if adds_bos and prompt.startswith(bos):
            prompt = prompt[len(bos):]
        out = {"prompt": prompt}
        for key in ("chosen", "rejected"):
            text = row[key]
            if eos and eos in text and not text[text.rindex(eos) + len(eos):].strip():
                text = text[:text.rindex(eos) + len(eos)]
            out[key] = text
        return out
    return dataset.map(strip, desc="Removing duplicate BOS/EOS from templated text")


def _is_templated(text: str, tokenizer) -> bool:
    return any(tok and tok in text for tok in tokenizer.all_special_tokens) or "[INST]" in text


def split_eval(dataset, fraction: float, seed: int):
    """Hold out ``fraction`` of the pairs (at least one) for evaluation."""
    if fraction <= 0:
        return dataset, None
    if not 0 < fraction < 1:
        raise ConfigError(f"--eval_split must be in [0, 1), got {fraction}")
    if len(dataset) < 2:
        raise DataError("dataset", f"{len(dataset)} pair(s) is too few to hold some out; "
                                   "add pairs, pass --eval_dataset, or set --eval_split 0")
    n_eval = max(1, round(len(dataset) * fraction))
    split = dataset.train_test_split(test_size=n_eval, seed=seed)
    return split["train"], split["test"]


def take(dataset, n: int | None):
    return dataset if n is None or dataset is None or n >= len(dataset) else dataset.select(range(n))


def train_and_eval_rows(script, seed: int, load: Callable, load_eval: Callable | None = None):
    """The training rows and the held-out rows (None when nothing is held out).

    ``load(specs)`` reads ``--dataset``; the held-out rows are ``load_eval(
    [--eval_dataset])`` (``load_eval`` defaults to ``load``) or ``--eval_split`` of the
    training rows. Each side is then capped by ``--max_train_samples`` /
    ``--max_eval_samples``."""
    rows = load(script.dataset)
    if script.eval_dataset:
        train, held_out = rows, (load_eval or load)([script.eval_dataset])
    else:
        train, held_out = split_eval(rows, script.eval_split, seed)
    return take(train, script.max_train_samples), take(held_out, script.max_eval_samples)


def train_and_eval_pairs(script, seed: int):
    """:func:`train_and_eval_rows` for preference pairs; an --eval_dataset is read with
    :func:`load_pairs`' default seed, so its pairs do not change with --seed."""
    return train_and_eval_rows(script, seed, lambda specs: load_pairs(specs, seed),
                               load_eval=load_pairs)


def check_eval_source(script, config) -> None:
    """Refuse an evaluation schedule with nothing to evaluate on."""
    if config.eval_strategy != "no" and not script.eval_dataset and script.eval_split <= 0:
        raise ConfigError("--eval_strategy is on but there is nothing to evaluate on; give "
                          "--eval_dataset or --eval_split > 0, or set --eval_strategy no")


# ---------------------------------------------------------------------------------------
# Models


def load_tokenizer(path: str):
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    # Some converted checkpoints (GGUF exports among them) name a different EOS token in
    # the tokenizer than in the model config; TRL appends tokenizer.eos_token to every
    # plain-text completion, so it must be the token the model stops on.
    try:
        eos_id = AutoConfig.from_pretrained(path).eos_token_id
    except (OSError, ValueError):
        eos_id = None
    if isinstance(eos_id, int) and tok.eos_token_id != eos_id and eos_id < len(tok):
        fixed = tok.convert_ids_to_tokens(eos_id)
        print(f"note: tokenizer EOS {tok.eos_token!r} differs from the model's ({fixed!r}); "
              f"using {fixed!r}")
        tok.eos_token = fixed
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def resolve_lora_targets(model_args, model) -> None:
    """Fill in ``lora_target_modules`` when it was left unset (None).

    Unset means the layers PEFT adapts by default for the model's architecture (the
    attention's q_proj and v_proj on Llama, Mistral and Qwen); an architecture PEFT has
    no default for gets every linear layer.
    """
    if not model_args.use_peft or model_args.lora_target_modules:
        return
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

    found = defaults.get(getattr(model.config, "model_type", None))
    model_args.lora_target_modules = list(found) if found else ["all-linear"]


def check_init_adapter(folder: str, model_path: str, model_args) -> None:
    """Refuse an adapter to continue from that is not a LoRA adapter of this base."""
    config = Path(folder) / "adapter_config.json"
    if not config.is_file():
        raise ConfigError(f"--init_adapter {folder}: no adapter_config.json there; pass the "
                          "output folder of an earlier LoRA run")
    if not model_args.use_peft:
        raise ConfigError("--init_adapter continues a LoRA adapter; it needs --use_peft true")
    from alignment.models import ModelNotAvailable, check_weight_files

    try:
        check_weight_files(folder)
    except ModelNotAvailable as e:
        raise ConfigError(f"--init_adapter: {e}") from None
    recorded = json.loads(config.read_text()).get("base_model_name_or_path")
    if recorded and Path(recorded).exists() and Path(recorded).resolve() != Path(model_path).resolve():
        raise ConfigError(f"--init_adapter {folder} was trained on {recorded}, not on "
                          f"{model_path}; give the same --model")


def load_causal_lm(path: str, model_args):
    """The policy's base weights, in the dtype and quantisation ``model_args`` ask for."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    quantization = get_quantization_config(model_args)
    return AutoModelForCausalLM.from_pretrained(
        path, revision=model_args.model_revision, dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        quantization_config=quantization,
        # quantised weights must be placed on the GPU as they load
        device_map={"": torch.cuda.current_device()} if quantization is not None else None)


# ---------------------------------------------------------------------------------------
# Run artefacts


def writes_outputs(trainer) -> bool:
    """Whether this process writes the run's files (tokenizer, metrics, card, plots).

    Call it after ``trainer.save_model()`` and ``trainer.save_state()``, which every rank
    must reach (they write once, from the main process, themselves). Under
    ``accelerate launch`` the other ranks then stop: were they to go on, they would write
    the same files at the same time, and read ``trainer_state.json`` before it exists.
    """
    return trainer.is_world_process_zero()


def track_totals(trainer):
    """Make the run's last logged figures its totals; return what :func:`final_metrics` needs.

    The Trainer logs every ``logging_steps``; a run whose length is not a multiple of it
    would end with figures (the cumulative ``num_tokens`` among them) a few steps short
    and a training curve that stops early, so the final optimizer step is logged too.
    The callback also notes the token count the trainer resumes from (see
    :func:`final_metrics`). Call it before ``trainer.train()``.
    """
    from transformers import TrainerCallback

    class RunTotals(TrainerCallback):
        tokens_at_start = 0

        def on_train_begin(self, args, state, control, **kwargs):
            # what a resumed run restored from its checkpoint (0 for a fresh run)
            self.tokens_at_start = state.num_input_tokens_seen or 0

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    totals = RunTotals()
    trainer.add_callback(totals)
    return totals


def final_metrics(log_history: list[dict], train_output, eval_metrics: dict | None,
                  totals=None) -> dict:
    """Last logged value of each training figure, the eval figures, and the run's totals.

    ``totals`` is what :func:`track_totals` returned; without it ``tokens_per_s`` assumes
    a fresh run whose final step was logged.
    """
    train: dict[str, float] = {}
    for entry in log_history:
        if "eval_loss" in entry or "train_runtime" in entry:
            continue
        train.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})
    train.pop("epoch", None)
    train.pop("step", None)
    out = {"train": train, "train_loss_mean": train_output.training_loss,
           "global_step": train_output.global_step,
           "train_runtime_s": train_output.metrics.get("train_runtime")}
    if eval_metrics:
        out["eval"] = {k.removeprefix("eval_"): v for k, v in eval_metrics.items()}
    out["train_loss_first"] = next((e["loss"] for e in log_history if "loss" in e), None)
    out["tokens_per_s"] = _tokens_per_second(
        log_history, out["train_runtime_s"], out["global_step"],
        totals.tokens_at_start if totals is not None else 0)
    runtime = out["train_runtime_s"]
    out["seconds_per_step"] = runtime / out["global_step"] if runtime and out["global_step"] else None
    return out


def _tokens_per_second(log_history: list[dict], runtime: float | None, final_step: int,
                       tokens_at_start: int) -> float | None:
    """Non-padding tokens trained on per second of this session's ``train()``.

    TRL keeps ``num_tokens`` as a running total over every micro-batch: the sum of the
    attention masks (chosen and rejected sequences both, for pairs), gathered over ranks;
    reference and evaluation passes are not counted. It is logged every
    ``logging_steps``; :func:`track_totals` makes the final step log too, so the last entry
    is the total. Most trainers start that total afresh in each session, as the runtime
    does; RLOO and GRPO keep it in the trainer state, which a resumed run restores, so the
    restored count (``tokens_at_start``) is taken off. None when the final step was not
    logged: a total from earlier steps over the whole runtime would understate the rate.
    """
    entries = [e for e in log_history if "num_tokens" in e and not any(
        k.startswith("eval_") for k in e)]
    if not entries or not runtime or entries[-1].get("step") != final_step:
        return None
    tokens = entries[-1]["num_tokens"]
    if tokens_at_start and tokens > tokens_at_start:
        tokens -= tokens_at_start
    return tokens / runtime if tokens > 0 else None


def write_metrics(output_dir: str | Path, metrics: dict, config: dict) -> Path:
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps({**metrics, "config": config}, indent=2, default=_jsonable))
    return path


def resolved_config(*objs) -> dict:
    """Every parsed dataclass as plain JSON-able values, keyed by class name."""
    out = {}
    for obj in objs:
        values = obj.to_dict() if hasattr(obj, "to_dict") else asdict(obj)
        out[type(obj).__name__] = json.loads(json.dumps(values, default=_jsonable))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)


# the figures a model card shows; metrics.json keeps all of them
CARD_FIGURES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                "rewards/accuracies", "mean_token_accuracy", "accuracy",
                "margin", "reward", "reward_std", "kl")


def write_model_card(output_dir: str | Path, *, method: str, base_model: str,
                     datasets: dict[str, int], hyperparameters: dict, metrics: dict,
                     adapter: bool, unit: str = "pairs") -> Path:
    """A README.md saying what was trained on what, how well, and how to load it.

    ``unit`` names what the data table counts (pairs, rows, conversations, prompts).
    """
    out = Path(output_dir)
    rows = "\n".join(f"| `{name}` | {count} |" for name, count in datasets.items())
    hyper = "\n".join(f"| `{k}` | `{v}` |" for k, v in hyperparameters.items())
    figures = {f"{split} {k}": v for split in ("train", "eval")
               for k, v in metrics.get(split, {}).items() if k in CARD_FIGURES}
    figs = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in figures.items())
    if adapter:
        load = (f"```python\nfrom peft import AutoPeftModelForCausalLM\n"
                f"from transformers import AutoTokenizer\n\n"
                f"model = AutoPeftModelForCausalLM.from_pretrained(\"{out}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{out}\")\n"
                f"# or fold the adapter into the base: align merge {out}\n```")
        kind = f"a LoRA adapter for `{base_model}`"
        if hyperparameters.get("peft") == "prompt-tuning":  # a soft prompt: nothing to fold
            load = load.replace(f"# or fold the adapter into the base: align merge {out}\n", "")
            kind = f"a prompt-tuning adapter (a soft prompt) for `{base_model}`"
    else:
        load = (f"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f"model = AutoModelForCausalLM.from_pretrained(\"{out}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{out}\")\n```")
        kind = f"a full fine-tune of `{base_model}`"
    text = f"""---
base_model: {base_model}
library_name: {"peft" if adapter else "transformers"}
tags: [align, trl, {method}]
---

# {out.name}

{kind}, trained with `align {method}` ({method.upper()}, TRL).

## Data

| dataset | {unit} |
|---|---|
{rows}

## Hyper-parameters

| name | value |
|---|---|
{hyper}

## Results

| figure | value |
|---|---|
{figs}

`training_curves.png` plots them against the step; `metrics.json` holds every figure and
the complete resolved configuration.

## Loading

{load}
"""
    path = out / "README.md"
    path.write_text(text)
    return path


def save_pairs(dataset, path: str | Path) -> Path:
    """Write pairs as JSONL (conversational fields stay message lists)."""
    path = Path(path)
    with open(path, "w") as f:
        for row in dataset:
            f.write(json.dumps({k: row[k] for k in ("prompt", "chosen", "rejected")}) + "\n")
    return path


def environment_note() -> str:
    import torch

    threads = torch.get_num_threads()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return f"device={device} torch_threads={threads} cpus={os.cpu_count()}"


# ---------------------------------------------------------------------------------------
# The end of a run: train, save, write the run's files, say where they are


@dataclass
class Run:
    """A finished ``trainer.train()``, as the process that writes the run's files sees it."""

    trainer: Any
    result: Any  # transformers' TrainOutput
    eval_metrics: dict | None
    totals: Any  # what track_totals returned
    out: Path

    @property
    def steps(self) -> int:
        return self.result.global_step


def train_and_save(trainer, resume: str | bool | None, *, evaluate: bool, tokenizer=None,
                   save_model: bool | str | Path = True) -> Run | None:
    """Train (from checkpoint ``resume``, if any), evaluate once more if asked, and save.

    ``save_model`` is where the trained weights go: True for the output dir, a path for
    somewhere else, False when the recipe saves them itself. ``tokenizer``, when given, is
    saved in the output dir. Every rank must call this (saving gathers sharded weights);
    the main process gets the :class:`Run` back and the others None, their cue to stop
    (see :func:`writes_outputs`).
    """
    totals = track_totals(trainer)
    result = trainer.train(resume_from_checkpoint=resume)
    eval_metrics = trainer.evaluate() if evaluate else None
    out = Path(trainer.args.output_dir)
    if save_model:
        trainer.save_model(str(out if save_model is True else save_model))
    trainer.save_state()
    if not writes_outputs(trainer):
        return None
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return Run(trainer, result, eval_metrics, totals, out)


@dataclass
class RunFiles:
    """What :func:`write_run` wrote, for :func:`print_run`."""

    method: str
    adapter: bool
    metrics: dict
    metrics_path: Path
    card: Path


def write_run(run: Run, script, model_args, config, *, method: str, train_data, eval_data,
              metrics: dict, hyperparameters: dict, unit: str = "pairs",
              save_eval_pairs: bool = False, adapter: bool | None = None) -> RunFiles:
    """Write ``metrics.json``, the model card and, with ``save_eval_pairs``, ``eval_pairs.jsonl``.

    ``metrics.json`` holds the run's figures (:func:`final_metrics`), then the recipe's own
    ``metrics``, then the resolved configuration of ``script``, ``model_args`` and
    ``config``. The card counts ``train_data`` and ``eval_data`` (None: nothing held out)
    in ``unit``s and shows ``hyperparameters``; ``adapter`` (default: whether LoRA was
    used) picks its loading instructions.
    """
    figures = final_metrics(run.trainer.state.log_history, run.result, run.eval_metrics,
                            run.totals)
    figures.update(metrics)
    metrics_path = write_metrics(run.out, figures,
                                 resolved_config(script, model_args, config))
    datasets = {", ".join(script.dataset): len(train_data)}
    if eval_data is not None:
        datasets[script.eval_dataset or "held out from the above"] = len(eval_data)
        if save_eval_pairs:
            save_pairs(eval_data, run.out / "eval_pairs.jsonl")
    adapter = model_args.use_peft if adapter is None else adapter
    # resolve_model_spec left the resolved path in model_name_or_path
    card = write_model_card(run.out, method=method,
                            base_model=script.model or model_args.model_name_or_path,
                            datasets=datasets, hyperparameters=hyperparameters,
                            metrics=figures, adapter=adapter, unit=unit)
    return RunFiles(method, adapter, figures, metrics_path, card)


def print_run(run: Run, files: RunFiles, *, summary: str | None = None,
              saved: str | None = None, notes: Sequence[str] = ()) -> None:
    """Plot the training curves, then say how the run went and where its files are.

    ``summary`` ends the first line (default: the seconds per step); ``saved`` names what
    the output dir holds (default: the adapter or the model, and the tokenizer); each of
    ``notes`` is one more line at the end.
    """
    from alignment.report import render_run

    curves = render_run(run.out)
    m = files.metrics
    if summary is None:
        summary = f" ({m['seconds_per_step']:.2f} s/step)"
    if saved is None:
        saved = f"{'adapter' if files.adapter else 'model'} + tokenizer"
    print(f"\nalign {files.method}: {run.steps} steps in {m['train_runtime_s']:.0f} s{summary}")
    print(f"  {saved}: {run.out}")
    print(f"  metrics:     {files.metrics_path}")
    print(f"  model card:  {files.card}")
    print(f"  curves:      {curves}")
    for line in notes:
        print(f"  {line}")


# ---------------------------------------------------------------------------------------
# Prompts for online RL (align rloo / grpo)


def load_prompts(specs: Sequence[str], seed: int = 0):
    """A ``prompt`` column of conversations ending with a user turn, from any dataset.

    Each spec is ``PATH[@WEIGHT]`` (as for :func:`alignment.data.load_mixture`). A file of
    bare prompts (rows holding only ``prompt``, plus ``id``/``source``) is read by the data
    layer's prompt reader (:func:`alignment.data.prompt_rows`), a text becoming a user turn;
    anything else goes through the data layer to conversations (preference, ranked, KTO
    and SFT formats all convert) and keeps every turn before the last assistant reply.
    Duplicate prompts (pairs share them) are kept once.

    A prompt list whose rows carry ``verifiers`` (specs of :mod:`alignment.verifiers`,
    beside any other metadata such as ``id``, ``source`` or ``task``) keeps them: the
    dataset then has a ``verifiers`` column too (an empty list for prompts without
    any), every spec checked, each error naming file and row.
    """
    import random

    import datasets

    from alignment.data import (convert, is_prompt_list, parse_mixture_spec, prompt_id,
                                prompt_rows, read_rows)

    if not specs:
        raise ConfigError("no dataset given: pass --dataset PATH (prompts, preference pairs, "
                          "conversations or any format `align data inspect` reads)")
    rng = random.Random(seed)
    prompts: dict[str, tuple[list[dict], list[dict]]] = {}
    with_checks = False
    for spec in specs:
        path, weight = parse_mixture_spec(spec)
        rows = read_rows(path)
        if not rows:
            raise DataError(path, "no rows")
        if is_prompt_list(rows):
            with_checks = with_checks or any(
                isinstance(r, dict) and r.get("verifiers") is not None for r in rows)
            found = []
            for i, row in enumerate(prompt_rows(rows, path, distinct=False, conversations=True),
                                    start=1):
                p = row["prompt"]
                found.append(([{"role": "user", "content": p}] if isinstance(p, str) else p,
                              _row_checks(row.get("verifiers"), path, i)))
        else:
            found = []
            for row in convert(rows, "sft", path=path, seed=seed):
                msgs = row["messages"]
                last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"),
                           default=len(msgs))
                if last > 0 and msgs[last - 1]["role"] == "user":
                    found.append((msgs[:last], []))
        if weight is not None:
            n = round(weight * len(found)) if weight <= 1 else int(weight)
            if n > len(found):
                raise DataError(path, f"asked for {n} prompts (`@{weight:g}`) but the dataset "
                                      f"has {len(found)}")
            found = rng.sample(found, n)
        for p, checks in found:
            prompts.setdefault(prompt_id(p), (p, checks))
    if not prompts:
        raise DataError(", ".join(specs), "no prompt ending with a user turn was found")
    rows = list(prompts.values())
    rng.shuffle(rows)
    columns = {"prompt": [p for p, _ in rows]}
    if with_checks:
        columns["verifiers"] = [checks for _, checks in rows]
    try:
        return datasets.Dataset.from_dict(columns)
    except Exception as e:  # arrow type clashes surface as several exception types
        raise DataError(", ".join(specs), f"the prompts' `verifiers` do not fit one table ({e}); "
                                          "give each parameter one type in every row (e.g. "
                                          "`answer` always a number, or always text)",
                        field="verifiers") from None


def _row_checks(value: object, path: object, row: int) -> list[dict]:
    from alignment import verifiers

    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(path, 'expected a list of specs ({"name": ..., "params": {...}}), got '
                              f"{type(value).__name__}", row=row, field="verifiers")
    return [verifiers.stored(verifiers.check_spec(s, f"verifiers[{j}]", path=path, row=row))
            for j, s in enumerate(value)]


def resume_checkpoint(training_args) -> str | bool | None:
    """What ``trainer.train(resume_from_checkpoint=...)`` gets, checked before loading.

    ``--resume_from_checkpoint PATH`` resumes from that checkpoint folder;
    ``--resume_from_checkpoint latest`` (or ``true``) from the newest ``checkpoint-*`` in
    ``--output_dir``. The run then continues to the same end, with the same optimizer,
    scheduler, data order and random state, as if it had not stopped.
    """
    value = training_args.resume_from_checkpoint
    if value in (None, "", False):
        return None
    if str(value).lower() in ("latest", "true", "last"):
        out = Path(training_args.output_dir)
        found = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                       if p.name.split("-")[-1].isdigit() else -1)
        if not found:
            raise ConfigError(f"--resume_from_checkpoint latest: no checkpoint-* folder in "
                              f"{out}; was --save_strategy on in the interrupted run?")
        return str(found[-1])
    if not (Path(value) / "trainer_state.json").exists():
        raise ConfigError(f"--resume_from_checkpoint {value}: not a checkpoint folder (no "
                          "trainer_state.json); pass OUTPUT_DIR/checkpoint-N or `latest`")
    return str(value)
