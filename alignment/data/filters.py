"""Table work with polars: exact dedup on normalised text, length filters, statistics.

:func:`normalised` is the one definition of "the same text" for every exact-duplicate
check, here and in the pipelines' quality filters (``pipelines/quality.py``).

Each filter returns ``(kept_rows, removed_count)`` so the caller can record in the
dataset card what every step removed. Rows stay plain dicts; polars only computes the
keys and masks, which keeps nested columns (conversations) untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import polars as pl

# Columns tried, in order, when a filter is not told which text to look at.
TEXT_COLUMNS = ("prompt", "messages", "instruction", "question", "conversations")


def text_of(value: Any) -> str:
    """Plain text of a cell: a string, or the contents of a conversation joined by newlines."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(text_of(_message_text(v)) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _message_text(value: Any) -> Any:
    if isinstance(value, dict) and ("content" in value or "value" in value):
        return value.get("content", value.get("value"))
    return value


def _is_text(value: Any) -> bool:
    """Text, or a list of texts or messages: the cells whose length means something."""
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(
        isinstance(_message_text(v), str) for v in value)


def _texts(rows: list[dict], column: str | None) -> list[str]:
    """The text each filter looks at: ``column``, or by default the row's prompt."""
    if column is not None:
        return [text_of(r.get(column)) for r in rows]
    for c in TEXT_COLUMNS:
        if c in rows[0]:
            return [_prompt_text(r.get(c)) for r in rows]
    raise ValueError(f"no text column found; pass one of the columns explicitly "
                     f"(tried {', '.join(TEXT_COLUMNS)})")


def _prompt_text(value: Any) -> str:
    # A conversation's prompt is everything before the final assistant reply, so two
    # SFT rows answering the same question count as duplicates.
    if isinstance(value, list) and value and isinstance(value[-1], dict) \
            and value[-1].get("role", value[-1].get("from")) in ("assistant", "gpt"):
        value = value[:-1]
    return text_of(value)


def normalised(texts: Sequence[str] | pl.Series) -> pl.Series:
    """Lower case, punctuation turned into spaces, whitespace collapsed.

    Two texts are exact duplicates when these are equal (``align data --dedup`` and the
    pipelines' ``--dedup`` alike), and n-grams are made of the words this leaves.
    Punctuation becomes a space rather than nothing, so "well-known" and "well known"
    agree, and "12:20" is two words, as an n-gram match needs.
    """
    series = texts if isinstance(texts, pl.Series) else pl.Series("t", list(texts),
                                                                     dtype=pl.String)
    return (series.str.to_lowercase()
            .str.replace_all(r"[^\w\s]", " ").str.replace_all(r"\s+", " ").str.strip_chars())


def dedup(rows: list[dict], column: str | None = None) -> tuple[list[dict], int]:
    """Keep the first row of each group whose text is equal once normalised.

    The text is ``column`` when given, else the prompt (``prompt``, ``instruction``,
    ``question``, or a conversation without its final assistant reply).
    """
    if not rows:
        return rows, 0
    first = normalised(_texts(rows, column)).is_first_distinct().to_list()
    kept = [r for r, k in zip(rows, first) if k]
    return kept, len(rows) - len(kept)


def prompt_length_filter(rows: list[dict], column: str | None = None, min_chars: int = 0,
                         max_chars: int | None = None) -> tuple[list[dict], int]:
    """Keep rows whose prompt (as in :func:`dedup`; ``column`` names another text) has
    ``min_chars`` to ``max_chars`` characters. The pipelines' length filter measures each
    response instead (``pipelines.quality.response_length_filter``)."""
    if not rows:
        return rows, 0
    lengths = pl.Series(_texts(rows, column), dtype=pl.String).str.len_chars()
    mask = lengths >= min_chars
    if max_chars is not None:
        mask = mask & (lengths <= max_chars)
    keep = mask.to_list()
    kept = [r for r, k in zip(rows, keep) if k]
    return kept, len(rows) - len(kept)


def stats(rows: list[dict]) -> dict:
    """Row count, columns, and character-length statistics of every text-like column."""
    columns = list(dict.fromkeys(c for r in rows for c in r))
    out: dict[str, Any] = {"rows": len(rows), "columns": columns, "lengths": {}}
    for c in columns:
        values = [r.get(c) for r in rows]
        if not any(_is_text(v) for v in values):
            continue
        lengths = pl.Series(c, [text_of(v) for v in values]).str.len_chars()
        out["lengths"][c] = {
            "min": int(lengths.min()), "mean": round(float(lengths.mean()), 1),
            "median": float(lengths.median()), "max": int(lengths.max()),
        }
    return out
