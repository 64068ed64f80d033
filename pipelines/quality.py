"""Data-quality filters for generated rows: exact and near deduplication, length and
refusal filters, and n-gram decontamination against an evaluation set.

Every filter takes rows (SFT ``messages`` or ranked ``prompt``/``responses``) and
returns ``(kept_rows, removed_count)``, so a pipeline can record each count in its
dataset card. The table work is done in polars; near-dedup is our own vectorised
MinHash (numpy) with LSH banding; ``bench/dedup.py`` compares it with a
``datasets.map`` over ``datasketch`` (60x faster side by side on 20k prompts, 25x at
1M against the baseline's linear extrapolation, on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from alignment.data import normalised

TextOf = Callable[[dict], str]

# Phrases that mark a response as a refusal or a model disclaimer rather than an answer.
REFUSAL_PATTERNS = (
    r"\bas an ai\b", r"\bas a language model\b", r"\bi'?m sorry\b", r"\bi am sorry\b",
    r"\bi apologi[sz]e\b", r"\bi cannot\b", r"\bi can'?t (?:help|assist|do|provide)",
    r"\bi am (?:not able|unable) to\b", r"\bi'?m (?:not able|unable) to\b",
    r"\bi (?:won'?t|will not) be able to\b", r"\bsorry, but\b",
)
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)


# ---------------------------------------------------------------- which text

def prompt_text(row: dict) -> str:
    """The prompt: first user turn of ``messages``, or ``prompt`` (text or messages)."""
    if isinstance(row.get("messages"), list):
        return next((m.get("content") or "" for m in row["messages"]
                     if m.get("role") == "user"), "")
    prompt = row.get("prompt", "")
    if isinstance(prompt, list):
        return next((m.get("content") or "" for m in prompt if m.get("role") == "user"), "")
    return str(prompt or "")


def response_texts(row: dict) -> list[str | None]:
    """Assistant turns of ``messages``, or the ranked ``responses``."""
    if isinstance(row.get("messages"), list):
        return [m.get("content") for m in row["messages"] if m.get("role") == "assistant"]
    return list(row.get("responses") or [])


def all_text(row: dict) -> str:
    if isinstance(row.get("messages"), list):
        return "\n".join(m.get("content") or "" for m in row["messages"])
    return "\n".join([prompt_text(row)] + [r or "" for r in response_texts(row)])


def _keep(rows: list[dict], mask: np.ndarray) -> tuple[list[dict], int]:
    kept = [r for r, k in zip(rows, mask) if k]
    return kept, len(rows) - len(kept)


# ---------------------------------------------------------------- filters

def drop_failed(rows: list[dict]) -> tuple[list[dict], int]:
    """Rows where a teacher call failed: a missing or empty turn or response."""
    def ok(row: dict) -> bool:
        texts = ([m.get("content") for m in row["messages"]]
                 if isinstance(row.get("messages"), list) else response_texts(row))
        return all(isinstance(t, str) and t.strip() for t in texts)

    return _keep(rows, np.array([ok(r) for r in rows], dtype=bool))


def exact_dedup(rows: list[dict], text_of: TextOf = prompt_text) -> tuple[list[dict], int]:
    """Keep the first row of each normalised text (``alignment.data.normalised``, the
    same key ``align data --dedup`` compares)."""
    if not rows:
        return rows, 0
    return _keep(rows, normalised([text_of(r) for r in rows]).is_first_distinct().to_numpy())


def response_length_filter(rows: list[dict], min_chars: int | None = None,
                           max_chars: int | None = None) -> tuple[list[dict], int]:
    """Drop rows with any response shorter than ``min_chars`` or longer than ``max_chars``
    (``alignment.data.prompt_length_filter`` measures the prompt instead)."""
    lo, hi = min_chars or 0, max_chars or float("inf")
    return _keep(rows, np.array([all(lo <= len(t or "") <= hi for t in response_texts(r))
                                 for r in rows], dtype=bool))


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text or ""))


def refusal_filter(rows: list[dict]) -> tuple[list[dict], int]:
    """Drop rows where any response refuses or disclaims (see ``REFUSAL_PATTERNS``)."""
    return _keep(rows, np.array([not any(is_refusal(t) for t in response_texts(r))
                                 for r in rows], dtype=bool))


# ---------------------------------------------------------------- n-grams and MinHash

def ngram_hashes(texts: Sequence[str], n: int, short: bool = True) -> pl.DataFrame:
    """One row per (doc, hashed word n-gram) of the normalised texts.

    With ``short``, a text shorter than ``n`` words counts as one n-gram of all its
    words, so short prompts still have a fingerprint.
    """
    words = (pl.DataFrame({"doc": np.arange(len(texts), dtype=np.int64),
                           "w": normalised(texts).str.split(" ")})
             .explode("w").filter(pl.col("w").is_not_null() & (pl.col("w") != "")))
    # shift the whole column (a window `.over("doc")` is many times slower) and
    # keep the n-grams whose last word still belongs to the same document
    grams = words.with_columns(
        pl.concat_str([pl.col("w").shift(-i) for i in range(n)], separator=" ").alias("g"),
        (pl.col("doc").shift(-(n - 1)) == pl.col("doc")).alias("same"))
    full = grams.filter(pl.col("same")).select("doc", "g")
    if not short:
        return (full.with_columns(pl.col("g").hash(seed=0).alias("h"))
                .select("doc", "h").sort("doc", maintain_order=True))
    short_grams = (words.group_by("doc").agg(pl.col("w").str.join(" ").alias("g"),
                                       pl.len().alias("k"))
             .filter(pl.col("k") < n).select("doc", "g"))
    return (pl.concat([full, short_grams]).with_columns(pl.col("g").hash(seed=0).alias("h"))
            .select("doc", "h").sort("doc", maintain_order=True))


def minhash_signatures(texts: Sequence[str], num_perm: int = 64, ngram: int = 3,
                       seed: int = 1, chunk: int = 1 << 20) -> np.ndarray:
    """MinHash signatures, shape (len(texts), num_perm), uint32.

    Each "permutation" is ``x -> a*x + b mod 2**32`` with odd ``a``: a bijection of the
    32-bit space, computed for all shingles at once in uint32 arithmetic (wrap-around
    is the modulus), then reduced per document with ``np.minimum.reduceat``.
    """
    table = ngram_hashes(texts, ngram)
    docs = table["doc"].to_numpy()
    h64 = table["h"].to_numpy()
    shingles = (h64 ^ (h64 >> np.uint64(32))).astype(np.uint32)
    rng = np.random.default_rng(seed)
    a = (rng.integers(1, 2**32, num_perm, dtype=np.uint64) | 1).astype(np.uint32)
    b = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
    sig = np.full((len(texts), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if len(docs) == 0:
        return sig
    starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
    # blocks of about `chunk` shingles, cut at document boundaries, bound the memory
    bounds = np.unique(starts[np.searchsorted(starts, np.arange(0, len(docs), chunk))])
    for lo, hi in zip(bounds, np.r_[bounds[1:], len(docs)]):
        block = shingles[lo:hi, None] * a[None, :] + b[None, :]
        local = starts[(starts >= lo) & (starts < hi)] - lo
        sig[docs[lo + local]] = np.minimum.reduceat(block, local, axis=0)
    return sig


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows per band whose S-curve crosses 1/2 nearest ``threshold``."""
    best = (1, num_perm)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if abs((1 / bands) ** (1 / rows) - threshold) < abs(
                (1 / best[0]) ** (1 / best[1]) - threshold):
            best = (bands, rows)
    return best


def near_duplicate_mask(texts: Sequence[str], threshold: float = 0.8, num_perm: int = 64,
                        ngram: int = 3, seed: int = 1) -> np.ndarray:
    """True for each text that is a near-duplicate of an earlier one.

    LSH banding finds candidates: within each band, every text is compared with the
    first text that fell into its bucket, and counts as a duplicate when the estimated
    Jaccard similarity of the two signatures reaches ``threshold``.
    """
    n = len(texts)
    if n == 0:
        return np.zeros(0, dtype=bool)
    sig = minhash_signatures(texts, num_perm, ngram, seed)
    bands, rows = lsh_params(threshold, num_perm)
    mix = np.random.default_rng(seed + 1).integers(1, 2**63, rows, dtype=np.uint64) | 1
    dup = np.zeros(n, dtype=bool)
    idx = np.arange(n)
    for band in range(bands):
        part = sig[:, band * rows:(band + 1) * rows].astype(np.uint64)
        keys = (part * mix[None, :]).sum(axis=1)  # wraps mod 2**64: a hash of the band
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        head = first[inverse]
        cand = np.flatnonzero((head != idx) & ~dup)
        if len(cand):
            jaccard = (sig[cand] == sig[head[cand]]).mean(axis=1)
            dup[cand[jaccard >= threshold]] = True
    return dup


def near_dedup(rows: list[dict], threshold: float = 0.8, text_of: TextOf = prompt_text,
               num_perm: int = 64, ngram: int = 3) -> tuple[list[dict], int]:
    """Drop rows whose text is a near-duplicate (MinHash Jaccard) of an earlier row."""
    mask = near_duplicate_mask([text_of(r) for r in rows], threshold, num_perm, ngram)
    return _keep(rows, ~mask)


def eval_texts(path: str | Path) -> list[str]:
    """Every string an evaluation set holds (prompts, answers, messages...)."""
    from alignment.data import read_rows

    def strings(value) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    return [s for row in read_rows(path) for s in strings(row)
            if s not in ("user", "assistant", "system")]


def decontaminate(rows: list[dict], eval_path: str | Path, n: int = 13,
                  text_of: TextOf = all_text) -> tuple[list[dict], int]:
    """Drop rows that share a word ``n``-gram with any text of the evaluation set.

    An evaluation text shorter than ``n`` words (a short question, a one-word answer)
    has no ``n``-gram; it removes a row only when it equals the row's prompt after
    normalising, so an answer such as "Paris" does not ban every row naming Paris.
    """
    if not rows:
        return rows, 0
    evals = eval_texts(eval_path)
    banned = ngram_hashes(evals, n, short=False)["h"].unique()
    hits = ngram_hashes([text_of(r) for r in rows], n, short=False).filter(
        pl.col("h").is_in(banned.implode()))
    mask = np.ones(len(rows), dtype=bool)
    mask[hits["doc"].unique().to_numpy()] = False
    norm = normalised(evals)
    short = set(norm.filter(norm.str.split(" ").list.len() < n).to_list())
    prompts = normalised([prompt_text(r) for r in rows]).to_list()
    mask &= np.array([p not in short for p in prompts], dtype=bool)
    return _keep(rows, mask)


def apply_filters(rows: list[dict], args: argparse.Namespace,
                  text_of: TextOf | None = None) -> tuple[list[dict], dict]:
    """The filters chosen on the command line, in a fixed order; counts per filter."""
    counts: dict[str, int] = {}
    key = text_of or prompt_text
    if getattr(args, "dedup", False):
        rows, counts["exact_duplicates"] = exact_dedup(rows, key)
    if getattr(args, "near_dedup", None) is not None:
        rows, counts["near_duplicates"] = near_dedup(rows, args.near_dedup, key)
    if getattr(args, "min_chars", None) is not None or getattr(args, "max_chars", None):
        rows, counts["length"] = response_length_filter(rows, args.min_chars, args.max_chars)
    if getattr(args, "drop_refusals", False):
        rows, counts["refusals"] = refusal_filter(rows)
    if getattr(args, "decontaminate", None):
        rows, counts["contaminated"] = decontaminate(rows, args.decontaminate, args.ngram)
    return rows, counts
