"""align pretrain: continued pre-training, a causal language model trained on raw text.

    align pretrain --dataset notes/ [--dataset more.txt] [--model smollm2]
                   [--output_dir runs/pretrain] [--config recipe.yaml]
                   [--split paragraph] [--peft lora|none] [any SFTConfig / ModelConfig flag]

Every token of every document is trained (no chat template, no mask): the model reads
prose, code or notes and learns to continue them. A ``--dataset`` is a ``.txt``/``.md``
file (one document, or one per paragraph with ``--split paragraph``), a folder of them,
or a table with a ``text`` column (``--text_field``); several are concatenated. The end of
each document gets the tokenizer's end-of-sequence token.

Packing (on by default): documents go into blocks of ``--max_length`` tokens by best-fit
decreasing (TRL's ``bfd``), with no padding and the position ids restarting at each
document, so attention never crosses from one document into the next; a document longer
than a block is truncated (``--packing_strategy bfd_split`` splits it instead,
``wrapped`` cuts a single stream into blocks). ``--packing false`` trains one document per
row, padded.

``--peft lora`` (default) trains LoRA adapters on a frozen base; ``--peft none`` every
weight (the usual choice for large amounts of text; on CPU, for small models only).
The held-out split (``--eval_split``, ``--eval_dataset``) gives the evaluation loss and
its perplexity.

Writes to the output dir: the adapter (or full model) and tokenizer, ``metrics.json``,
a model card ``README.md`` and ``training_curves.png``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from alignment import training
from alignment.data.texts import SPLITS, read_texts
from alignment.errors import ConfigError
from alignment.recipes._args import HeldOutArguments, PeftArguments


@dataclass
class ScriptArguments(HeldOutArguments, PeftArguments):
    """Raw text and model for a continued pre-training run; training settings live in
    SFTConfig."""

    text_field: str = field(default="text", metadata={
        "help": "The column that holds each document, for tables (JSONL, Parquet, CSV)."})
    split: str = field(default="file", metadata={
        "help": "For .txt/.md files: file (each file is one document) or paragraph (each "
                "paragraph, text between blank lines, is one).", "choices": list(SPLITS)})


def _defaults(values) -> training.Defaults:
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    has_eval = bool(values.eval_dataset) or values.eval_split > 0
    d = training.lora_cpu_defaults(f"runs/pretrain-{name}", learning_rate=2e-4,
                                   has_eval=has_eval)
    d["max_length"] = (512, "tokens per packed block")
    d["packing"] = (True, "documents packed into blocks without padding; attention stays "
                          "within each document")
    d["num_train_epochs"] = (1, "")
    return d


def parse_args(argv: list[str]) -> tuple[tuple, training.Defaults]:
    """(ScriptArguments, SFTConfig, ModelConfig) and the working defaults applied."""
    from trl import ModelConfig, SFTConfig

    return training.parse_recipe_args((ScriptArguments, SFTConfig, ModelConfig), argv,
                                      _defaults)


def load_documents(specs: list[str], text_field: str, split: str):
    """One ``text`` row per document of every ``--dataset``, in order."""
    import datasets

    if not specs:
        raise ConfigError("no dataset given: pass --dataset PATH (a .txt/.md file, a folder "
                          "of them, or a table with a text column)")
    docs = [{"text": d["text"]} for spec in specs for d in read_texts(spec, text_field, split)]
    return datasets.Dataset.from_list(docs)


def main(argv: list[str]) -> int:
    try:
        (script, config, model_args), chosen = parse_args(argv)
    except SystemExit as e:  # --help, or argparse rejecting a flag
        return int(e.code or 0)
    training.print_defaults("align pretrain", chosen)

    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_peft_choice(script, model_args)
    training.check_before_loading(model_args, config)
    if config.assistant_only_loss or config.completion_only_loss:
        raise ConfigError("--assistant_only_loss / --completion_only_loss mask a chat's "
                          "prompt; pretraining trains every token of raw text: use align sft")
    resume = training.resume_checkpoint(config)
    training.check_eval_source(script, config)
    model_path = training.resolve_model_spec(script.model, model_args)

    # --- Data -------------------------------------------------------------------------
    def load(specs):
        return load_documents(specs, script.text_field, script.split)

    train_rows, eval_rows = training.train_and_eval_rows(script, config.seed, load)
    config.dataset_text_field = "text"
    config.completion_only_loss = False
    tokenizer = training.load_tokenizer(model_path)
    lengths = [len(ids) for ids in tokenizer(list(train_rows["text"]),
                                             add_special_tokens=False).input_ids]
    tokens = sum(lengths) + len(lengths)  # an end-of-sequence token closes each
    layout = (f"packed into blocks of {config.max_length} tokens ({config.packing_strategy})"
              if config.packing else "one per row, padded")
    print(f"align pretrain: {len(train_rows)} documents, {tokens:,} tokens, {layout}"
          + (f"; {len(eval_rows)} held out" if eval_rows is not None else "")
          + f" ({training.environment_note()})")
    if config.max_length and max(lengths) + 1 > config.max_length and \
            config.packing_strategy != "bfd_split":
        cut = sum(n + 1 > config.max_length for n in lengths)
        print(f"  {cut} document(s) longer than --max_length {config.max_length} are "
              "truncated (--packing_strategy bfd_split splits them instead)")

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
    eval_loss = (run.eval_metrics or {}).get("eval_loss")
    files = training.write_run(
        run, script, model_args, config, method="pretrain", train_data=train_rows,
        eval_data=eval_rows, unit="documents",
        metrics={"train_documents": len(train_rows), "train_tokens": tokens,
                 "eval_documents": len(eval_rows) if eval_rows is not None else 0,
                 "eval_perplexity": math.exp(eval_loss) if eval_loss is not None else None},
        hyperparameters={
            "learning_rate": config.learning_rate, "epochs": config.num_train_epochs,
            "max_steps": config.max_steps, "steps": run.steps,
            "batch_size": config.per_device_train_batch_size,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "max_length": config.max_length, "packing": config.packing,
            "packing_strategy": config.packing_strategy if config.packing else None,
            "split": script.split, "bf16": config.bf16, "seed": config.seed,
            **training.peft_hyperparameters(script, model_args)})
    training.print_run(run, files)
    return 0
