"""Linear probes: does a model's hidden state encode a property of the text it reads?

    align probe [DATA] [--model smollm2] [--text-field text] [--label-field label]
                [--pairs] [--token last|mean] [--test-fraction 0.3] [--output runs/probe]

Every row is read by the model once (batched, no gradients, in the dtype
``alignment.engine.pick_dtype`` picks); the hidden state at one token (``--token last``:
the last real token; ``mean``: the mean over the row's tokens) is kept for every layer,
the embeddings (layer 0) and each transformer block's output, as float32. For each layer
a logistic regression on standardised features is fitted on the training rows and scored
on the held-out rows. The control is the same probe fitted on shuffled training labels
(the mean over ``--controls`` shuffles, 5 by default, fresh ones for every layer): what a
probe this size finds in features when they carry no label, so a layer reads as encoding
the property only where it clears its control.

The split is seeded and stratified. Rows with a ``group`` field are split by group, so
the true and the corrupted version of one fact (or the chosen and rejected answer of one
prompt, with ``--pairs``) are never on both sides; the 95% intervals are percentile
bootstraps over held-out groups, which are the independent units.

Without DATA the shipped set is probed: 200 well-known true statements, each with a false
twin made from the same sentence with one entity or number swapped
(``alignment/evalsets/true_false_facts.jsonl``, rows ``{text, label, group}``).

``--pairs`` reads preference pairs in any format ``align data`` reads: each pair gives a
chosen row (label 1) and a rejected row (label 0), the prompt rendered with the chat
template and the response written as the assistant's turn, left open so that ``last``
reads the response's own last token rather than the template's end-of-turn marker.

Writes ``probe.json`` (figures per layer and the run's settings) and ``probe.png``
(accuracy and control against layer, with the chance line) into ``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import ConfigError, DataError

FACTS = Path(__file__).parent / "evalsets" / "true_false_facts.jsonl"
MIN_PER_CLASS = 5  # fewer leaves a held-out side with one row of a class, or none
RESAMPLES = 2000


@dataclass(frozen=True)
class Examples:
    """Texts to probe, their class labels (as text) and the group each belongs to.
    ``chat`` texts are already rendered with the chat template (no special tokens to add)."""

    texts: list[str]
    labels: list[str]
    groups: list[str]
    chat: bool = False


def _label(value: object, path: Path, row: int, field: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise DataError(path, "is missing; every row needs a class label", row, field)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)) and str(value).strip():
        return str(value).strip()
    raise DataError(path, f"expected a class label (text, integer or boolean), got "
                          f"{type(value).__name__}", row, field)


def read_examples(path: str | Path, text_field: str = "text",
                  label_field: str = "label") -> Examples:
    """Rows ``{text_field, label_field[, group]}`` of any file ``align data`` reads."""
    from alignment.data import read_rows

    path = Path(path)
    rows = read_rows(path)
    texts, labels, groups = [], [], []
    for i, row in enumerate(rows, 1):
        if text_field not in row or row[text_field] is None:
            raise DataError(path, f"is missing (columns here: {sorted(row)}); name the text "
                                  "column with --text-field", i, text_field)
        text = row[text_field]
        if not isinstance(text, str):
            raise DataError(path, f"expected text, got {type(text).__name__}", i, text_field)
        if not text.strip():
            raise DataError(path, "is empty; remove the row or fill the field", i, text_field)
        if label_field not in row:
            raise DataError(path, f"is missing (columns here: {sorted(row)}); name the label "
                                  "column with --label-field", i, label_field)
        texts.append(text)
        labels.append(_label(row[label_field], path, i, label_field))
        group = row.get("group")
        groups.append(f"row-{i}" if group is None else str(group))
    return _checked(Examples(texts, labels, groups), path)


def read_pair_examples(path: str | Path) -> list[dict]:
    """Preference pairs in any format, checked before a model loads (render them with
    :func:`pair_examples` once the tokenizer is there)."""
    from alignment.data import read_as

    return read_as(path, "preference")


def pair_examples(rows: list[dict], tokenizer=None) -> Examples:
    """Chosen (label ``1``) and rejected (``0``) as assistant turns after their prompt;
    both rows of a pair, and every pair of one prompt, share a group. Without a tokenizer
    the texts are left empty (enough to check the labels and the split)."""
    from alignment.data import prompt_id
    from alignment.likelihood import prompt_text

    texts, labels, groups = [], [], []
    for row in rows:
        prompt = row["prompt"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        for field, label in (("chosen", "1"), ("rejected", "0")):
            turns = row[field]
            if isinstance(turns, str):
                turns = [{"role": "assistant", "content": turns}]
            texts.append("" if tokenizer is None else
                         prompt_text(tokenizer, messages + turns[:-1]) + turns[-1]["content"])
            labels.append(label)
            groups.append(prompt_id(prompt))
    chat = tokenizer is not None and tokenizer.chat_template is not None
    return Examples(texts, labels, groups, chat=chat)


def _checked(examples: Examples, path: Path) -> Examples:
    counts = Counter(examples.labels)
    if len(counts) < 2:
        raise DataError(path, f"every row has the label {next(iter(counts))!r}; a probe "
                              "needs at least two classes")
    small = {k: n for k, n in counts.items() if n < MIN_PER_CLASS}
    if small:
        raise DataError(path, f"too few rows ({len(examples.texts)}; per class {dict(counts)}); "
                              f"a probe needs at least {MIN_PER_CLASS} rows of each class")
    return examples


def split(labels: list[str], groups: list[str], test_fraction: float,
          seed: int) -> tuple[list[int], list[int]]:
    """Row indices (train, held out): whole groups go to one side; groups with the same
    label make-up are spread evenly over both (a stratified split of groups)."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    rng = random.Random(seed)
    names = list(members)
    rng.shuffle(names)
    # a stable sort keeps the shuffled order inside each stratum
    names.sort(key=lambda g: sorted(Counter(labels[i] for i in members[g]).items()))
    start = rng.random()
    held = {g for k, g in enumerate(names)  # every 1/f-th group, from a random start
            if math.floor((k + 1) * test_fraction + start) > math.floor(k * test_fraction + start)}
    train = [i for g in names if g not in held for i in members[g]]
    test = [i for g in names if g in held for i in members[g]]
    return sorted(train), sorted(test)


def checked_split(examples: Examples, test_fraction: float, seed: int,
                  path: Path) -> tuple[list[int], list[int]]:
    """:func:`split`, refused when a side lacks a class."""
    train, test = split(examples.labels, examples.groups, test_fraction, seed)
    for side, idx in (("training", train), ("held-out", test)):
        missing = set(examples.labels) - {examples.labels[i] for i in idx}
        if missing:
            raise DataError(path, f"too few rows or groups: the {side} side of the split has "
                                  f"no row labelled {sorted(missing)}; give more rows, or "
                                  "change --test-fraction")
    return train, test


def encode(tokenizer, examples: Examples, max_length: int) -> list[list[int]]:
    """Token ids of each text, cut to its last ``max_length`` tokens (where ``last`` reads)."""
    add = not examples.chat  # a rendered template already holds its special tokens
    return [tokenizer(t, add_special_tokens=add).input_ids[-max_length:] for t in examples.texts]


def hidden_features(model, tokenizer, encoded: list[list[int]], token: str = "last",
                    batch_size: int = 16):
    """Array (layers + 1, rows, hidden), float32: the embeddings and every block's output
    (the last one after the final norm, as transformers returns it) at the chosen token."""
    import numpy as np
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding
    out = None
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, :len(encoded[i])] = 1
            states = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           output_hidden_states=True, use_cache=False,
                           logits_to_keep=1).hidden_states
            states = torch.stack(states).float()  # (layers + 1, batch, tokens, hidden)
            mask = mask.to(device)
            if token == "last":
                picked = states[:, torch.arange(len(idx), device=device), mask.sum(1) - 1]
            else:
                weights = mask[None, :, :, None].float()
                picked = (states * weights).sum(2) / weights.sum(2)
            if out is None:
                out = np.zeros((states.shape[0], len(encoded), states.shape[-1]), np.float32)
            out[:, idx] = picked.cpu().numpy()
    return out


def _fit_predict(x_train, y_train, x_test) -> tuple[list, bool]:
    """Held-out predictions of a standardised logistic regression, and whether it converged."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(x_train, y_train)
    return probe.predict(x_test), not any(issubclass(w.category, ConvergenceWarning)
                                          for w in caught)


def probe_layers(features, examples: Examples, train: list[int], test: list[int],
                 seed: int = 0, controls: int = 5) -> dict:
    """Held-out accuracy of a probe per layer and of its control (the mean over
    ``controls`` shuffles of the training labels), each with a 95% group-bootstrap interval."""
    import numpy as np

    y = np.array(examples.labels)
    groups = np.unique(np.array(examples.groups)[test], return_inverse=True)[1]
    counts = np.bincount(groups)
    resampled = np.random.default_rng(seed).integers(0, len(counts), (RESAMPLES, len(counts)))

    def scored(hits) -> dict:  # hits: correct predictions per held-out group
        boot = hits[resampled].sum(1) / counts[resampled].sum(1)
        return {"accuracy": float(hits.sum() / len(test)),
                "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}

    rng = np.random.default_rng(seed + 1)
    layers, unconverged = [], 0
    for layer, x in enumerate(features):
        predicted, ok = _fit_predict(x[train], y[train], x[test])
        unconverged += not ok
        real = scored(np.bincount(groups, weights=predicted == y[test]))
        shuffled_hits = np.zeros(len(counts))
        for _ in range(controls):
            predicted, ok = _fit_predict(x[train], rng.permutation(y[train]), x[test])
            unconverged += not ok
            shuffled_hits += np.bincount(groups, weights=predicted == y[test]) / controls
        shuffled = scored(shuffled_hits)
        layers.append({"layer": layer, "name": "embeddings" if layer == 0 else f"block {layer}",
                       **real, "control_accuracy": shuffled["accuracy"],
                       "control_ci95": shuffled["ci95"]})
    best = max(layers, key=lambda r: r["accuracy"])
    return {"n": len(y), "n_train": len(train), "n_test": len(test),
            "groups_test": len(counts), "classes": dict(sorted(Counter(examples.labels).items())),
            "chance": max(Counter(y[test]).values()) / len(test), "seed": seed,
            "controls": controls,
            "interval": f"95% percentile bootstrap over {len(counts)} held-out groups "
                        f"({RESAMPLES} resamples)",
            "unconverged_fits": unconverged, "best_layer": best["layer"], "layers": layers}


def format_table(result: dict) -> str:
    lines = [f"align probe: {result['model']} ({result['dtype']}), token {result['token']}, "
             f"{result['n']} rows ({result['n_train']} train, {result['n_test']} held out in "
             f"{result['groups_test']} groups), chance {result['chance']:.2f}",
             f"{'layer':<17} {'held-out accuracy [95% CI]':<27} "
             f"control, {result['controls']} label shuffles [95% CI]"]
    for r in result["layers"]:
        lo, hi = r["ci95"]
        clo, chi = r["control_ci95"]
        mark = "  <- best" if r["layer"] == result["best_layer"] else ""
        lines.append(f"{r['layer']:>3} {r['name']:<13} {r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"
                     f"{'':<7} {r['control_accuracy']:.3f} [{clo:.3f}, {chi:.3f}]{mark}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alignment.data.io import write_file

    layers = result["layers"]
    xs = [r["layer"] for r in layers]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [r["accuracy"] for r in layers], marker="o", label="probe (held out)")
    ax.fill_between(xs, [r["ci95"][0] for r in layers], [r["ci95"][1] for r in layers],
                    alpha=0.2, label="95% interval")
    ax.plot(xs, [r["control_accuracy"] for r in layers], marker="s", color="tab:grey",
            label="control: shuffled training labels")
    ax.axhline(result["chance"], color="black", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"linear probe per layer: {Path(result['model']).name}, token {result['token']}")
    fig.tight_layout()
    write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _load(spec: str):
    from alignment.engine import load_for_inference

    return load_for_inference(spec)


def run(data: str | None, model: str = "smollm2", text_field: str = "text",
        label_field: str = "label", pairs: bool = False, token: str = "last",
        test_fraction: float = 0.3, seed: int = 0, controls: int = 5, batch_size: int = 16,
        max_length: int = 512, output: str | Path = "runs/probe") -> dict:
    """Probe every layer of ``model`` and write probe.json and probe.png into ``output``."""
    from alignment.data.io import write_file

    if not 0 < test_fraction < 1:
        raise ConfigError(f"--test-fraction {test_fraction} must be between 0 and 1")
    if pairs and data is None:
        raise ConfigError("--pairs needs a preference dataset: give its path")
    source = Path(data) if data is not None else FACTS
    # every check of the data runs before the model loads
    rows = read_pair_examples(source) if pairs else None
    examples = _checked(pair_examples(rows), source) if pairs else read_examples(
        source, text_field, label_field)
    train, test = checked_split(examples, test_fraction, seed, source)
    lm, tokenizer, dtype, why = _load(model)
    if pairs:
        examples = pair_examples(rows, tokenizer)
    features = hidden_features(lm, tokenizer, encode(tokenizer, examples, max_length), token,
                               batch_size)
    result = {"model": model, "dataset": str(source), "pairs": pairs, "token": token,
              "dtype": dtype, "dtype_why": why, "text_field": text_field,
              "label_field": label_field, "test_fraction": test_fraction,
              **probe_layers(features, examples, train, test, seed, controls)}
    out = Path(output)
    write_file(out / "probe.json", lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    plot(result, out / "probe.png")
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="align probe",
                                     description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("data", nargs="?", help="rows with a text and a label field (.jsonl, "
                        ".csv, .parquet, ...; default: the shipped true/false facts)")
    parser.add_argument("--model", default="smollm2",
                        help="bundled name, model folder or hub id (default: smollm2)")
    parser.add_argument("--text-field", default="text", help="column holding the text")
    parser.add_argument("--label-field", default="label", help="column holding the class")
    parser.add_argument("--pairs", action="store_true",
                        help="DATA holds preference pairs: chosen is class 1, rejected 0")
    parser.add_argument("--token", choices=("last", "mean"), default="last",
                        help="the last real token (default) or the mean over the row's tokens")
    parser.add_argument("--test-fraction", type=float, default=0.3,
                        help="share of rows (of groups, where rows have one) held out")
    parser.add_argument("--seed", type=int, default=0, help="split, control and bootstrap seed")
    parser.add_argument("--controls", type=int, default=5,
                        help="label shuffles the control averages over (default 5)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512,
                        help="longest row in tokens (a longer one keeps its last tokens)")
    parser.add_argument("--output", "-o", default="runs/probe",
                        help="folder for probe.json and probe.png (default: runs/probe)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if min(args.controls, args.batch_size, args.max_length) < 1:
        raise ConfigError("--controls, --batch-size and --max-length must be at least 1")
    result = run(args.data, args.model, args.text_field, args.label_field, args.pairs,
                 args.token, args.test_fraction, args.seed, args.controls, args.batch_size,
                 args.max_length, args.output)
    print(format_table(result))
    print(f"figures: {Path(args.output) / 'probe.json'}, plot: {Path(args.output) / 'probe.png'}")
    return 0
