"""The rows a training run reads: preference pairs and RL prompts from any dataset, their
held-out split and the caps on both sides.

Pairs pass through the chat template exactly once (:func:`chat_format_pairs`); RL prompts
are conversations ending with a user turn (:func:`load_prompts`). ``align eval`` reads its
pairs here too, so a run and its evaluation see the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from alignment.errors import ConfigError, DataError


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
    if wrap_plain_text and tokenizer.chat_template and not is_templated(first["prompt"], tokenizer):
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


def is_templated(text: str, tokenizer) -> bool:
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


def save_pairs(dataset, path: str | Path) -> Path:
    """Write pairs as JSONL (conversational fields stay message lists)."""
    path = Path(path)
    with open(path, "w") as f:
        for row in dataset:
            f.write(json.dumps({k: row[k] for k in ("prompt", "chosen", "rejected")}) + "\n")
    return path


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
                                prompt_rows, read_rows, weighted_sample)

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
        for p, checks in weighted_sample(found, weight, path, rng, noun="prompts"):
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
