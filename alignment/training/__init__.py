"""What every training recipe shares, one module per concept:

- :mod:`alignment.training.config` — TRL's config parsing with align's working defaults
  layered in (named shipped recipes for ``--config``), and the refusals that must happen
  before a model loads
- :mod:`alignment.training.adapters` — the PEFT config (LoRA or a soft prompt) and what
  the card records of it
- :mod:`alignment.training.metrics` / :mod:`alignment.training.card` — ``metrics.json``
  and the model card
- :mod:`alignment.training.run` — the end of a run: train, save, write its files
- the rows (:mod:`alignment.data.training_sets`), the weights (:mod:`alignment.models`) and
  the hardware (:mod:`alignment.hardware`) live with their own layers

A recipe (``alignment/recipes/<method>.py``) imports this package as ``training`` and
reads top to bottom, so that it states only what is its own; the names below are the
toolkit it calls.
"""

from alignment.data.training_sets import (chat_format_pairs, check_pairs, load_pairs,
                                          load_prompts, save_pairs, split_eval, take,
                                          train_and_eval_pairs, train_and_eval_rows)
from alignment.hardware import cpu_has_fast_bf16, environment_note, has_accelerator
from alignment.models import load_causal_lm, load_tokenizer
from alignment.training.adapters import (check_init_adapter, peft_config, peft_hyperparameters,
                                         resolve_lora_targets)
from alignment.training.card import CARD_FIGURES, write_model_card
from alignment.training.config import (Defaults, check_before_loading, check_eval_source,
                                       check_peft_choice, lora_cpu_defaults, parse_recipe_args,
                                       print_defaults, resolve_model_spec, resume_checkpoint)
from alignment.training.metrics import final_metrics, resolved_config, track_totals, write_metrics
from alignment.training.run import Run, RunFiles, print_run, train_and_save, write_run, writes_outputs

__all__ = [
    "CARD_FIGURES", "Defaults", "Run", "RunFiles", "chat_format_pairs", "check_before_loading",
    "check_eval_source", "check_init_adapter", "check_pairs", "check_peft_choice",
    "cpu_has_fast_bf16", "environment_note", "final_metrics", "has_accelerator",
    "load_causal_lm", "load_pairs", "load_prompts", "load_tokenizer", "lora_cpu_defaults",
    "parse_recipe_args", "peft_config", "peft_hyperparameters", "print_defaults",
    "print_run", "resolve_lora_targets", "resolve_model_spec", "resolved_config",
    "resume_checkpoint", "save_pairs", "split_eval", "take", "track_totals",
    "train_and_eval_pairs", "train_and_eval_rows", "train_and_save", "write_metrics",
    "write_model_card", "write_run", "writes_outputs",
]
