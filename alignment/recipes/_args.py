"""The data and model fields of the training commands, each declared and documented once.

Every recipe's ``ScriptArguments`` subclasses one of these and adds only its own fields;
training settings live in TRL's config and the model's in ``trl.ModelConfig``. A help
text names no command: what ``--dataset`` must hold is in each command's description.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainArguments:
    """What to train and on what (the online RL commands: prompts only)."""

    dataset: list[str] = field(default_factory=list, metadata={
        "help": "Training data, in any format `align data` reads (a file or a saved dataset "
                "folder) that converts to what this command trains on (see above). Several "
                "are mixed; PATH@0.5 takes half of a dataset's rows, PATH@500 takes 500."})
    model: str | None = field(default=None, metadata={
        "help": "Model to train: a bundled model (smollm2), a local folder or a hub id. "
                "Default: smollm2."})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "Train on at most this many rows (after the held-out split)."})


@dataclass
class HeldOutArguments(TrainArguments):
    """:class:`TrainArguments` and the rows held out for evaluation."""

    eval_dataset: str | None = field(default=None, metadata={
        "help": "Held-out rows to evaluate on, in the same formats as --dataset. Without it "
                "--eval_split of the training rows is held out."})
    eval_split: float = field(default=0.1, metadata={
        "help": "Fraction of the rows held out for evaluation when no --eval_dataset is "
                "given; 0 trains on everything."})
    max_eval_samples: int | None = field(default=None, metadata={
        "help": "Evaluate on at most this many rows."})


@dataclass
class PairArguments(HeldOutArguments):
    """:class:`HeldOutArguments` for commands that train on preference pairs."""

    wrap_plain_text: bool = field(default=True, metadata={
        "help": "Wrap plain-text pairs as one user turn and assistant reply so the chat "
                "template applies; false uses the raw text."})


PEFT_METHODS = ("lora", "prompt-tuning", "none")


@dataclass
class PeftArguments:
    """Which parameters train: LoRA adapters, a soft prompt, or every weight.

    Mixed into the ``ScriptArguments`` of the commands that accept ``--peft``; LoRA's own
    settings (rank, targets) stay ``trl.ModelConfig``'s ``--lora_*`` fields.
    """

    peft: str = field(default="lora", metadata={
        "help": "lora: train LoRA adapters on a frozen base (see --lora_r, "
                "--lora_target_modules); prompt-tuning: train only a soft prompt of "
                "--num_virtual_tokens embeddings put in front of every input; none: a full "
                "fine-tune (the same as --use_peft false).",
        "choices": list(PEFT_METHODS)})
    num_virtual_tokens: int = field(default=20, metadata={
        "help": "With --peft prompt-tuning: how many virtual tokens the soft prompt holds."})
    prompt_tuning_init_text: str | None = field(default=None, metadata={
        "help": "With --peft prompt-tuning: start the soft prompt from the embeddings of this "
                "text's tokens (repeated or cut to --num_virtual_tokens); without it the "
                "prompt starts random."})
