"""align's data layer: read what peers publish, convert it to align's schemas, write it back.

Public API (other packages code against exactly these names):

- :func:`read_rows`, :func:`write_rows`, :func:`write_card`, :func:`read_card` — disk I/O
- :func:`read_as` — read any format and convert it to one of align's schemas
- :func:`detect_format`, :func:`convert`, :data:`FORMATS` — formats (see ``formats.py``)
- :func:`load_sft`, :func:`load_preferences`, :func:`load_kto`, :func:`load_ranked`,
  :func:`load_mixture` (with :func:`weighted_sample` for a spec's ``@WEIGHT``) — read any
  format, convert, validate, return training data
- :func:`ranked_to_pairs` — rankings -> preference pairs (see ``pairs.py``)
- :func:`read_prompts`, :func:`read_prompt_rows`, :func:`prompt_rows` — prompts from any
  file, the one reader every command taking prompts uses (see ``prompts.py``)
- :func:`prompt_id`, :func:`stable_hash` — the stable id of a prompt, and the same hash as
  an integer for seeded choices
- :func:`normalised`, :func:`dedup`, :func:`prompt_length_filter`, :func:`stats` — polars
  table work (``normalised`` is what every exact-duplicate check compares)

The rows a training run reads (pairs in the chat format once, the held-out split, RL
prompts) are :mod:`alignment.data.training_sets`'.

Every bad input raises :class:`alignment.errors.DataError` naming file, row and field.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING

from alignment.data.filters import dedup, normalised, prompt_length_filter, stats
from alignment.data.formats import (FAMILY, FORMATS, TARGETS, convert, detect_format,
                                    prompt_id, stable_hash, validate_rows)
from alignment.data.io import read_card, read_rows, write_card, write_rows
from alignment.data.pairs import STRATEGIES, ranked_to_pairs
from alignment.data.prompts import is_prompt_list, prompt_rows, read_prompt_rows, read_prompts
from alignment.errors import DataError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "FAMILY", "FORMATS", "STRATEGIES", "TARGETS", "convert", "dedup", "detect_format",
    "is_prompt_list", "load_kto", "load_mixture", "load_preferences", "load_ranked",
    "load_sft", "normalised", "prompt_id", "prompt_length_filter", "prompt_rows",
    "ranked_to_pairs", "read_as", "read_card", "read_prompt_rows", "read_prompts",
    "read_rows", "stable_hash", "stats", "validate_rows", "weighted_sample", "write_card",
    "write_rows",
]

log = logging.getLogger(__name__)

# Columns each training schema hands to TRL; extra source columns are dropped so rows
# from different files line up in one table.
_COLUMNS = {
    "sft": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
}


def read_as(path: str | Path, kind: str, **convert_options) -> list[dict]:
    """Read ``path`` (any supported file or folder), convert to schema ``kind``, validate.

    ``convert_options`` go to :func:`convert` (``strategy``, ``margin``, ``seed``,
    ``stats``, ``fmt``).
    """
    counts = convert_options.pop("stats", None)
    counts = {} if counts is None else counts
    rows = convert(read_rows(path), kind, path=path, stats=counts, **convert_options)
    log.info("%s -> %s: %d rows, %s", path, kind, len(rows), counts)
    if not rows:
        raise DataError(path, f"no usable `{kind}` rows after conversion ({counts or 'none'}); "
                              "check the source format and scores")
    return rows


def _to_dataset(rows: list[dict], kind: str, path: object) -> "datasets.Dataset":
    import datasets

    keep = _COLUMNS[kind]
    table = [{c: r.get(c) for c in keep} for r in rows]
    try:
        return datasets.Dataset.from_list(table)
    except Exception as e:  # arrow type clashes surface as several exception types
        raise DataError(path, f"rows do not share one shape ({e}); mix only datasets that are "
                              "all text or all conversations") from None


def load_sft(path: str | Path) -> "datasets.Dataset":
    """Any SFT-able dataset -> ``Dataset`` with a ``messages`` column."""
    return _to_dataset(read_as(path, "sft"), "sft", path)


def load_preferences(path: str | Path, strategy: str = "best-worst", margin: float = 0.0,
                     seed: int = 0) -> "datasets.Dataset":
    """Any preference or ranked dataset -> TRL ``prompt``/``chosen``/``rejected`` ``Dataset``."""
    rows = read_as(path, "preference", strategy=strategy, margin=margin, seed=seed)
    return _to_dataset(rows, "preference", path)


def load_kto(path: str | Path) -> "datasets.Dataset":
    """Any KTO, preference or ranked dataset -> ``prompt``/``completion``/``label`` ``Dataset``."""
    return _to_dataset(read_as(path, "kto"), "kto", path)


def load_ranked(path: str | Path) -> list[dict]:
    """Any ranked dataset (align, UltraFeedback, Nectar, HelpSteer, pairs) -> ranked rows."""
    return read_as(path, "ranked")


_WEIGHT = re.compile(r"^(?P<path>.+)@(?P<weight>\d+(\.\d*)?|\.\d+)$")


def parse_mixture_spec(spec: str) -> tuple[str, float | None]:
    """``"data/a.jsonl@0.5"`` -> (``"data/a.jsonl"``, 0.5); no ``@WEIGHT`` -> weight None."""
    m = _WEIGHT.match(spec)
    if m is None or Path(spec).exists():
        return spec, None
    return m["path"], float(m["weight"])


def weighted_sample(rows: list, weight: float | None, path: object, rng: random.Random,
                    noun: str = "rows") -> list:
    """The rows a mixture spec's ``@WEIGHT`` asks for: all of them for None, a fraction
    (``@0.25``) or a count (``@500``) drawn without replacement by ``rng``."""
    if weight is None:
        return rows
    n = round(weight * len(rows)) if weight <= 1 else int(weight)
    if n > len(rows):
        raise DataError(path, f"asked for {n} {noun} (`@{weight:g}`) but the dataset has "
                              f"{len(rows)}; lower the count or use a fraction <= 1")
    return rng.sample(rows, n)


def load_mixture(specs: list[str], kind: str, seed: int = 0):
    """Load several datasets as one, each sampled by its weight.

    Each spec is ``PATH`` (every row) or ``PATH@WEIGHT``: a weight up to 1 is the
    fraction of that dataset's rows to draw (``@0.25``), a weight above 1 is a row count
    (``@500``). ``PATH`` may carry ``:SPLIT``. Sampling is without replacement and
    seeded; the rows of all datasets are then shuffled together with the same seed.
    Returns a ``datasets.Dataset`` for ``sft``/``preference``/``kto``, a list for ``ranked``.
    """
    if kind not in TARGETS:
        raise ValueError(f"unknown kind {kind!r}; use one of {TARGETS}")
    if not specs:
        raise ValueError("load_mixture needs at least one dataset spec")
    rng = random.Random(seed)
    mixed: list[dict] = []
    for spec in specs:
        path, weight = parse_mixture_spec(spec)
        rows = read_as(path, kind, seed=seed)
        mixed.extend(weighted_sample(rows, weight, path, rng))
    rng.shuffle(mixed)
    if kind == "ranked":
        return mixed
    return _to_dataset(mixed, kind, ", ".join(specs))
