"""align sft: supervised fine-tuning of a chat model on conversations.

    align sft --dataset chats.jsonl [--model smollm2] [--output_dir runs/sft]
              [--config recipe.yaml] [any SFTConfig / ModelConfig flag]

Any dataset `align data` can turn into ``{"messages": [...]}`` rows trains here: OpenAI
messages, ShareGPT, Alpaca, Dolly, OpenOrca, TRL prompt/completion, and preference or
ranked data (the chosen / best response). Several ``--dataset`` are mixed; ``PATH@0.5``
takes half of a dataset's rows, ``PATH@500`` takes 500.

Configuration: ``ScriptArguments`` below, ``trl.SFTConfig`` and ``trl.ModelConfig``.
Precedence: dataclass defaults < align's working defaults (printed at start) < YAML
``--config`` < command line. Unknown YAML keys are an error.

Loss: by default only the assistant's tokens are trained (``--completion_only``). Where
the chat template marks assistant turns (``{% generation %}``, or TRL ships a marked copy
of it) every assistant turn is trained via TRL's ``assistant_only_loss``; otherwise each
conversation is split into a prompt (every turn before the last reply) and a completion
(the last reply), and TRL's ``completion_only_loss`` trains the reply. Either way the
token that ends an assistant turn (``<|im_end|>``, ``</s>``) is trained, so the model
learns to stop: a marked template that leaves it out takes the split instead. The chat
template is applied exactly once, by TRL, with ``add_special_tokens=False``: no doubled
BOS/EOS.

Writes to the output dir: the adapter (or full model) and tokenizer, ``metrics.json``,
a model card ``README.md`` and ``training_curves.png``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alignment import training
from alignment.recipes._args import HeldOutArguments, PeftArguments
from alignment.errors import ConfigError, DataError


@dataclass
class ScriptArguments(HeldOutArguments, PeftArguments):
    """Data and model for an SFT run; training settings live in SFTConfig."""

    completion_only: bool = field(default=True, metadata={
        "help": "Train only on the assistant's tokens (see the module help for how); false "
                "trains on every token of the templated conversation."})


def _defaults(values) -> training.Defaults:
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    has_eval = bool(values.eval_dataset) or values.eval_split > 0
    d = training.lora_cpu_defaults(f"runs/sft-{name}", learning_rate=2e-4, has_eval=has_eval)
    if values.peft == "prompt-tuning":
        d["learning_rate"] = (3e-2, "suits a soft prompt (its few embeddings move slowly)")
    d["max_length"] = (512, "tokens per conversation; longer ones are truncated")
    d["num_train_epochs"] = (1, "")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, SFTConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig, SFTConfig

    return training.parse_recipe_args((ScriptArguments, SFTConfig, ModelConfig), argv, _defaults)


def load_conversations(specs: list[str], seed: int):
    """``messages`` rows from one dataset or a ``PATH[@WEIGHT]`` mixture."""
    from alignment.data import load_mixture, load_sft, parse_mixture_spec

    if not specs:
        raise ConfigError("no dataset given: pass --dataset PATH (conversations, or any "
                          "format `align data inspect` reads)")
    if len(specs) == 1 and parse_mixture_spec(specs[0])[1] is None:
        return load_sft(specs[0])
    return load_mixture(list(specs), "sft", seed)


def template_tokenizer(tokenizer, chat_template_path: str | None):
    """The tokenizer whose chat template TRL will train with.

    A ``--chat_template_path`` naming a tokenizer (a folder or hub id, as the Zephyr
    recipes do for a base model without a template) is cloned onto the model's tokenizer
    by SFTTrainer only once the model is loaded; how the loss is masked is decided before
    that, and must be decided on the template that will be used, not on the base's.
    """
    if not chat_template_path or chat_template_path.endswith((".jinja", ".j2")):
        return tokenizer
    from transformers import AutoTokenizer

    try:
        source = AutoTokenizer.from_pretrained(chat_template_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--chat_template_path {chat_template_path}: no tokenizer could be "
                          f"loaded from it ({e}); pass a tokenizer folder, a hub id or a "
                          ".jinja file") from None
    if not source.chat_template:
        raise ConfigError(f"--chat_template_path {chat_template_path}: that tokenizer has no "
                          "chat template to copy")
    return source


def assistant_mask_problem(tokenizer) -> str | None:
    """Why TRL's assistant-only mask cannot be used with this template, or None if it can.

    It can when the template marks assistant turns (``{% generation %}``, or TRL ships a
    marked copy of it) and the marked span ends with the token that closes the turn
    (``<|im_end|>``, ``</s>``): a span that leaves it to the next turn trains every reply
    but never the stop, and the model would not learn to end its answers.
    """
    from trl.chat_template_utils import (get_training_chat_template,
                                         is_chat_template_stop_token_trained)

    if not tokenizer.chat_template:
        return "the tokenizer has no chat template"
    try:
        marked = get_training_chat_template(tokenizer)
    except ValueError:  # TRL knows no marked copy of this template
        return ("the chat template has no {% generation %} markers and TRL has no marked "
                "copy of it")
    if not is_chat_template_stop_token_trained(tokenizer, chat_template=marked):
        return ("the chat template's {% generation %} span leaves out the token that ends an "
                "assistant turn, so the model would never learn to stop; move it inside "
                "{% generation %}...{% endgeneration %}")
    return None


def split_last_reply(dataset, where: str):
    """``messages`` -> conversational ``prompt`` (every turn before the last reply) and
    ``completion`` (the last reply), so TRL's completion mask covers just the reply."""
    for i, row in enumerate(dataset, start=1):
        msgs = row["messages"]
        if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
            raise DataError(where, "a conversation must end with an assistant reply to be "
                                   "trained on; drop the trailing turns or the row", row=i,
                            field="messages")
    return dataset.map(lambda row: {"prompt": row["messages"][:-1],
                                    "completion": row["messages"][-1:]},
                       remove_columns=["messages"], desc="Splitting off the last reply")


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align sft", chosen)

    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_peft_choice(script, model_args)
    training.check_before_loading(model_args, config)
    resume = training.resume_checkpoint(config)
    if config.assistant_only_loss and not script.completion_only:
        raise ConfigError("--assistant_only_loss true contradicts --completion_only false; "
                          "drop one of them")
    training.check_eval_source(script, config)
    model_path = training.resolve_model_spec(script.model, model_args)

    # --- Data -------------------------------------------------------------------------
    where = ", ".join(script.dataset)
    train_rows, eval_rows = training.train_and_eval_rows(
        script, config.seed, lambda specs: load_conversations(specs, config.seed))

    tokenizer = training.load_tokenizer(model_path)
    if config.chat_template_path and config.chat_template_path.endswith((".jinja", ".j2")):
        tokenizer.chat_template = Path(config.chat_template_path).read_text()
    if not tokenizer.chat_template and not config.chat_template_path:
        raise ConfigError(f"{model_path}: the tokenizer has no chat template to render "
                          "conversations with; pass --chat_template_path template.jinja")
    # Where the assistant mask would leave out the end-of-turn token, the prompt/completion
    # split trains the last reply instead: its completion always ends with that token.
    problem = assistant_mask_problem(template_tokenizer(tokenizer, config.chat_template_path))
    if script.completion_only and not config.assistant_only_loss and problem is None:
        config.assistant_only_loss = True
    if config.assistant_only_loss and problem is not None:
        raise ConfigError(f"--assistant_only_loss cannot be used: {problem}; drop the flag "
                          "(--completion_only trains the last reply instead)")
    if script.completion_only and not config.assistant_only_loss:
        train_rows = split_last_reply(train_rows, where)
        if eval_rows is not None:
            eval_rows = split_last_reply(eval_rows, script.eval_dataset or where)
        config.completion_only_loss = True
        loss_on = "the last assistant reply of each conversation (prompt/completion split)"
    elif config.assistant_only_loss:
        loss_on = "every assistant turn (assistant_only_loss)"
    else:
        config.completion_only_loss = False
        loss_on = "every token"
    print(f"align sft: {len(train_rows)} training conversations"
          + (f", {len(eval_rows)} held out" if eval_rows is not None else "")
          + f"; loss on {loss_on} ({training.environment_note()})")

    # --- Model and trainer --------------------------------------------------------------
    from trl import SFTTrainer

    model = training.load_causal_lm(model_path, model_args)
    trainer = SFTTrainer(model=model, args=config, train_dataset=train_rows,
                         eval_dataset=eval_rows, processing_class=tokenizer,
                         peft_config=training.peft_config(script, model_args, model_path))
    if model_args.use_peft:
        trainer.model.print_trainable_parameters()

    # --- Train and save -----------------------------------------------------------------
    run = training.train_and_save(trainer, resume, evaluate=eval_rows is not None,
                                  tokenizer=tokenizer)
    if run is None:  # other ranks: the main process writes the rest
        return 0
    files = training.write_run(
        run, script, model_args, config, method="sft", train_data=train_rows,
        eval_data=eval_rows, unit="conversations",
        metrics={"train_conversations": len(train_rows), "loss_on": loss_on,
                 "eval_conversations": len(eval_rows) if eval_rows is not None else 0},
        hyperparameters={
            "loss_on": loss_on, "learning_rate": config.learning_rate,
            "epochs": config.num_train_epochs, "max_steps": config.max_steps,
            "steps": run.steps, "batch_size": config.per_device_train_batch_size,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "max_length": config.max_length, "packing": config.packing, "bf16": config.bf16,
            "seed": config.seed, **training.peft_hyperparameters(script, model_args)})
    training.print_run(run, files)
    return 0
