"""The `align` command: a literal list of subcommands, each imported only when run.

Every subcommand module exposes ``main(argv: list[str]) -> int``. Keeping the list
literal (no registry, no plugin discovery) means `align --help` is instant and the
test suite can walk every command.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("alignment.commands.models", "prepare and list the bundled offline models"),
    "data": ("alignment.commands.data", "inspect and convert datasets (inspect, convert, pairs)"),
    "generate": ("pipelines.cli", "run a distillation or AI-feedback pipeline"),
    "annotate": ("annotation.cli", "human annotation in Argilla (serve, push, pull, calibrate)"),
    "pretrain": ("alignment.recipes.pretrain", "continued pre-training on raw text files"),
    "sft": ("alignment.recipes.sft", "supervised fine-tuning"),
    "rm": ("alignment.recipes.rm", "train a reward model on preference pairs"),
    "rloo": ("alignment.recipes.rloo", "RLOO against a reward model"),
    "grpo": ("alignment.recipes.grpo", "GRPO against a reward model"),
    "dpo": ("alignment.recipes.dpo", "direct preference optimisation (and its loss variants)"),
    "kto": ("alignment.recipes.kto", "KTO on unpaired good/bad completions"),
    "orpo": ("alignment.recipes.orpo", "ORPO: SFT and preference in one loss"),
    "cpo": ("alignment.recipes.cpo", "CPO, and SimPO with --loss_type simpo (experimental in TRL)"),
    "merge": ("alignment.recipes.merge", "fold adapters into bases, merge fine-tunes"),
    "loop": ("alignment.recipes.loop", "on-policy rounds: sample, verify, pair, DPO, evaluate"),
    "eval": ("alignment.evaluate", "preference accuracy, reward margins and win rate"),
    "report": ("alignment.report", "render a run's plots and summary again"),
    "probe": ("alignment.probe", "linear probes per layer: do hidden states encode a label?"),
    "invert": ("alignment.invert", "prompt inversion: search for a prompt that makes the model "
                                   "write a given answer"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: align <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `align <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from alignment import __version__

        print(f"align {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"align: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    if "--verbose" not in rest:
        # transformers draws a "Loading weights" bar for every model it loads (through
        # huggingface_hub's switch, read once at import); align's own bars say what runs
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    module = importlib.import_module(COMMANDS[name][0])
    from alignment.errors import AlignError

    try:
        return int(module.main(rest) or 0)
    except AlignError as e:
        print(f"align {name}: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
