"""A recipe's configuration: dataclass defaults < align's working defaults < YAML < command
line, and the refusals that must happen before any weights load.

``--config`` takes a YAML file or the name of a shipped recipe (``dpo_cpu`` is
``alignment/recipes/dpo_cpu.yaml``), so an install reaches them without a checkout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alignment.errors import ConfigError
from alignment.hardware import cpu_has_fast_bf16, has_accelerator


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
    if "--config" in argv[:-1]:  # TRL reads the file again itself: give it the path
        i = argv.index("--config")
        argv[i + 1] = str(recipe_path(argv[i + 1]))
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
        raise ConfigError("--config needs a YAML recipe: a path, or a shipped recipe's name "
                          f"({', '.join(shipped_recipes())})")
    path = Path(argv[i + 1])  # a shipped recipe's name is already its path (parse_recipe_args)
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (shipped recipes, by name: "
                          f"{', '.join(shipped_recipes())})") from None
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


RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipes() -> list[str]:
    """Names of the YAML recipes installed with align (``alignment/recipes/*.yaml``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(spec: str) -> Path:
    """``--config``'s value as a file: an existing path as given, else a shipped recipe's
    name (``dpo_cpu`` or ``dpo_cpu.yaml``), so an install reaches them without a checkout.
    An unknown name stays the path it was, for the caller's "not found" error."""
    path = Path(spec)
    if path.exists() or len(path.parts) > 1:
        return path
    shipped = RECIPES_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return shipped if shipped.is_file() else path


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


def check_eval_source(script, config) -> None:
    """Refuse an evaluation schedule with nothing to evaluate on."""
    if config.eval_strategy != "no" and not script.eval_dataset and script.eval_split <= 0:
        raise ConfigError("--eval_strategy is on but there is nothing to evaluate on; give "
                          "--eval_dataset or --eval_split > 0, or set --eval_strategy no")


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


def checkpoint_complete(folder: Path) -> bool:
    """Whether a ``checkpoint-N`` folder was written to the end: its trainer state (the
    last file Trainer writes) parses, and its weights are there."""
    import json

    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return any((folder / name).exists() for name in (
        "adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
        "pytorch_model.bin", "adapter_model.bin"))


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
        # a run killed while saving leaves its newest checkpoint half written (Trainer
        # writes trainer_state.json after the weights, optimizer and random states)
        complete = [p for p in found if checkpoint_complete(p)]
        if not complete:
            raise ConfigError(f"--resume_from_checkpoint latest: no complete checkpoint in "
                              f"{out} ({', '.join(p.name for p in found)} were cut off while "
                              "being written); start again without --resume_from_checkpoint")
        if complete[-1] != found[-1]:
            skipped = [p.name for p in found[found.index(complete[-1]) + 1:]]
            print(f"resuming from {complete[-1].name}: {', '.join(skipped)} cut off "
                  "while being written, ignored", flush=True)
        return str(complete[-1])
    if not (Path(value) / "trainer_state.json").exists():
        raise ConfigError(f"--resume_from_checkpoint {value}: not a checkpoint folder (no "
                          "trainer_state.json); pass OUTPUT_DIR/checkpoint-N or `latest`")
    return str(value)
