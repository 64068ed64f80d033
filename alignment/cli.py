"""The `align` command: a literal table of subcommands, each imported only when run.

Every subcommand module exposes ``main(argv: list[str]) -> int``; the table and its
dispatcher are :mod:`alignment.dispatch`'s, as ``align generate``'s are. A bad input
(:class:`alignment.errors.AlignError`) ends in one line naming the command, and exit code 2.
"""

from __future__ import annotations

import os
import sys

from alignment.dispatch import Command, dispatch

COMMANDS: dict[str, Command] = {
    "models": Command("alignment.commands.models", "prepare and list the bundled offline models"),
    "data": Command("alignment.commands.data",
                    "inspect and convert datasets (inspect, convert, pairs)"),
    "generate": Command("pipelines.cli", "run a distillation or AI-feedback pipeline"),
    "annotate": Command("annotation.cli",
                        "human annotation in Argilla (serve, push, pull, calibrate)"),
    "pretrain": Command("alignment.recipes.pretrain", "continued pre-training on raw text files"),
    "sft": Command("alignment.recipes.sft", "supervised fine-tuning"),
    "rm": Command("alignment.recipes.rm", "train a reward model on preference pairs"),
    "rloo": Command("alignment.recipes.rloo", "RLOO against a reward model"),
    "grpo": Command("alignment.recipes.grpo", "GRPO against a reward model"),
    "dpo": Command("alignment.recipes.dpo",
                   "direct preference optimisation (and its loss variants)"),
    "kto": Command("alignment.recipes.kto", "KTO on unpaired good/bad completions"),
    "orpo": Command("alignment.recipes.orpo", "ORPO: SFT and preference in one loss"),
    "cpo": Command("alignment.recipes.cpo",
                   "CPO, and SimPO with --loss_type simpo (experimental in TRL)"),
    "merge": Command("alignment.recipes.merge", "fold adapters into bases, merge fine-tunes"),
    "export": Command("alignment.export",
                      "a trained model as one GGUF file for llama.cpp and Ollama"),
    "loop": Command("alignment.recipes.loop",
                    "on-policy rounds: sample, verify, pair, DPO, evaluate"),
    "eval": Command("alignment.evaluate", "preference accuracy, reward margins and win rate"),
    "report": Command("alignment.report", "render a run's plots and summary again"),
    "probe": Command("alignment.probe",
                     "linear probes per layer: do hidden states encode a label?"),
    "invert": Command("alignment.invert",
                      "prompt inversion: search for a prompt that makes the model write a given "
                      "answer"),
}


def _quiet_loads(name: str, rest: list[str]) -> None:
    if "--verbose" not in rest:
        # transformers draws a "Loading weights" bar for every model it loads (through
        # huggingface_hub's switch, read once at import); align's own bars say what runs
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-V"], ["--version"]):
        from alignment import __version__

        print(f"align {__version__}")
        return 0
    from alignment.errors import AlignError

    try:
        return dispatch("align", "command", COMMANDS, argv, before=_quiet_loads)
    except AlignError as e:
        print(f"align {argv[0]}: error: {e}", file=sys.stderr)
        return e.exit_code
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """Close the process group of an ``accelerate launch`` run before the process exits.

    Left open, its communication threads are still running when the interpreter tears
    down, and a rank can then abort at exit ("terminate called without an active
    exception") after its work is done, turning a finished run into a failed one.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
