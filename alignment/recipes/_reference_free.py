"""What `align cpo` and `align orpo` share: TRL's experimental reference-free preference
trainers (``trl.experimental.cpo``, ``trl.experimental.orpo``), fed and run alike.

Neither method keeps a reference model, and both trainers append an EOS to any answer
that does not end with one. So the chat template is rendered here, once, into text that
ends on the EOS token: a template that writes a newline after its end-of-turn token
(ChatML does) would otherwise end every answer with two.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from alignment import training
from alignment.errors import ConfigError


def trainer_classes(method: str) -> tuple[type, type]:
    """(``<METHOD>Config``, ``<METHOD>Trainer``) from ``trl.experimental.<method>``."""
    # align says "experimental" in its help and card; TRL's own import warning adds nothing
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    module = importlib.import_module(f"trl.experimental.{method}")
    name = method.upper()
    return getattr(module, f"{name}Config"), getattr(module, f"{name}Trainer")


def defaults(run_name: str, values) -> training.Defaults:
    """The working defaults both commands start from; ``run_name`` heads the output dir."""
    name = Path(values.model or values.model_name_or_path or "smollm2").name
    has_eval = bool(values.eval_dataset) or values.eval_split > 0
    d = training.lora_cpu_defaults(f"runs/{run_name}-{name}", learning_rate=5e-5,
                                   has_eval=has_eval)
    d["max_length"] = (512, "prompt + answer tokens; longer answers are truncated")
    d["num_train_epochs"] = (1, "")
    return d


def render_pairs(dataset, tokenizer):
    """Conversational pairs -> text: the prompt with its generation prompt, each answer
    ending exactly on the EOS token (see the module help for why)."""
    if not isinstance(dataset[0]["prompt"], list):
        return dataset
    eos = tokenizer.eos_token

    def render(row):
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False,
                                               add_generation_prompt=True)
        out = {"prompt": prompt}
        for key in ("chosen", "rejected"):
            full = tokenizer.apply_chat_template(row["prompt"] + row[key], tokenize=False)
            answer = full[len(prompt):] if full.startswith(prompt) else full
            if eos and eos in answer:
                answer = answer[:answer.rindex(eos) + len(eos)]
            out[key] = answer
        return out
    return dataset.map(render, desc="Rendering the chat template")


def train(method: str, script, config, model_args, describe: str = ""):
    """Check, load the pairs and the model, and train ``align <method>``; returns
    ``(run, train_pairs, eval_pairs)``, ``run`` None on the processes that write nothing
    (see ``training.train_and_save``). ``describe`` follows the command's name in the
    line that counts the pairs."""
    # --- Refuse what cannot work, before loading any weights --------------------------
    training.check_before_loading(model_args, config)
    resume = training.resume_checkpoint(config)
    if config.generate_during_eval:
        raise ConfigError("--generate_during_eval logs samples to Weights & Biases or Comet "
                          "only; drop it (align eval compares generations offline)")
    training.check_eval_source(script, config)
    model_path = training.resolve_model_spec(script.model, model_args)

    # --- Data -------------------------------------------------------------------------
    train_pairs, eval_pairs = training.train_and_eval_pairs(script, config.seed)
    tokenizer = training.load_tokenizer(model_path)
    train_pairs = render_pairs(
        training.chat_format_pairs(train_pairs, tokenizer, script.wrap_plain_text), tokenizer)
    if eval_pairs is not None:
        eval_pairs = render_pairs(
            training.chat_format_pairs(eval_pairs, tokenizer, script.wrap_plain_text), tokenizer)
    print(f"align {method}{describe}: {len(train_pairs)} training pairs"
          + (f", {len(eval_pairs)} held out" if eval_pairs is not None else "")
          + f" ({training.environment_note()})")

    # --- Model and trainer --------------------------------------------------------------
    from trl import get_peft_config

    _, trainer_class = trainer_classes(method)
    model = training.load_causal_lm(model_path, model_args)
    trainer = trainer_class(model=model, args=config, train_dataset=train_pairs,
                            eval_dataset=eval_pairs, processing_class=tokenizer,
                            peft_config=get_peft_config(model_args))
    if model_args.use_peft:
        trainer.model.print_trainable_parameters()

    # --- Train and save -----------------------------------------------------------------
    run = training.train_and_save(trainer, resume, evaluate=eval_pairs is not None,
                                  tokenizer=tokenizer)
    return run, train_pairs, eval_pairs
