"""The model card (``README.md``) a finished run leaves: what was trained on what, how
well, and how to load it.
"""

from __future__ import annotations

from pathlib import Path


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
