"""Rankings -> preference pairs.

A ranked row holds N responses with scores (higher is better, ``None`` = the judge gave
no verdict). Strategies:

- ``best-worst``: the highest-scored response against the lowest-scored one.
- ``best-random``: the highest-scored response against a response drawn at random
  among those scored at least ``margin`` lower (and strictly lower). The draw is seeded per prompt id, so the same
  seed gives the same pairs whatever the row order.
- ``all``: every pair ``(a, b)`` with ``score(a) > score(b)``.

Every strategy keeps a pair only when ``score(chosen) - score(rejected) >= margin``.
Equal scores are never paired (a tie says nothing about preference), and responses
with a null score are skipped; both are counted. When several responses share the
best (or worst) score, the first of them in the row is used.

Truncated responses (``truncated`` true, or finish reason ``"length"``: the token limit
cut them off mid-answer) are skipped too, and counted, unless ``keep_truncated``: a
judge may well prefer a longer cut-off answer, and training on it teaches the student to
stop mid-sentence. Rows that say nothing about truncation pair as before.
"""

from __future__ import annotations

import random
from itertools import permutations

STRATEGIES = ("best-worst", "best-random", "all")


def _answer(prompt: str | list, text: str) -> str | list:
    # TRL wants chosen/rejected in the same shape as the prompt.
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def _pair(row: dict, c: int, r: int) -> dict:
    return {"id": row["id"], "prompt": row["prompt"],
            "chosen": _answer(row["prompt"], row["responses"][c]),
            "rejected": _answer(row["prompt"], row["responses"][r]),
            "score_chosen": float(row["scores"][c]), "score_rejected": float(row["scores"][r])}


def truncated_responses(row: dict) -> list[bool]:
    """Per response of a ranked row: was it cut off by the token limit? True when its
    ``truncated`` flag is true or its finish reason is ``"length"``, False where the row
    says neither (or has no such lists, one entry per response)."""
    n = len(row["scores"])

    def per_response(field: str) -> list:
        value = row.get(field)
        return list(value) if isinstance(value, list) and len(value) == n else [None] * n

    return [bool(f) or r == "length"
            for f, r in zip(per_response("truncated"), per_response("finish_reasons"))]


def ranked_to_pairs(rows: list[dict], strategy: str = "best-worst", margin: float = 0.0,
                    seed: int = 0, keep_truncated: bool = False) -> tuple[list[dict], dict]:
    """Build TRL preference pairs from ranked rows; returns ``(pairs, counts)``.

    ``counts``: ``rows``, ``pairs``, ``truncated_skipped`` (responses skipped for being
    cut off by the token limit; 0 with ``keep_truncated``), ``null_scores`` (other
    responses skipped for having no score), ``ties`` (candidate pairs with equal scores),
    ``below_margin`` (candidate pairs closer than ``margin``), ``rows_without_pairs``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown pairing strategy {strategy!r}; use one of {STRATEGIES}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    counts = dict(rows=len(rows), pairs=0, truncated_skipped=0, null_scores=0, ties=0,
                  below_margin=0, rows_without_pairs=0)
    pairs: list[dict] = []
    for row in rows:
        cut = truncated_responses(row) if not keep_truncated else [False] * len(row["scores"])
        counts["truncated_skipped"] += sum(cut)
        usable = [(i, s) for i, s in enumerate(row["scores"]) if not cut[i]]
        scored = [(i, float(s)) for i, s in usable if s is not None]
        counts["null_scores"] += len(usable) - len(scored)
        found = _candidates(row, scored, strategy, margin, seed)
        kept = 0
        for c, r in found:
            diff = row["scores"][c] - row["scores"][r]
            if diff == 0:
                counts["ties"] += 1
            elif diff < margin:
                counts["below_margin"] += 1
            else:
                pairs.append(_pair(row, c, r))
                kept += 1
        if not kept:
            counts["rows_without_pairs"] += 1
    counts["pairs"] = len(pairs)
    return pairs, counts


def _candidates(row: dict, scored: list[tuple[int, float]], strategy: str, margin: float,
                seed: int) -> list[tuple[int, int]]:
    """Index pairs (chosen, rejected) to consider, before the tie and margin checks."""
    if len(scored) < 2:
        return []
    if strategy == "all":
        return [(a, b) for (a, sa), (b, sb) in permutations(scored, 2)
                if sa > sb or (sa == sb and a < b)]  # each tie once, to be counted
    best = max(scored, key=lambda t: (t[1], -t[0]))
    if strategy == "best-worst":
        worst = min(scored, key=lambda t: (t[1], t[0]))
        if worst[0] == best[0]:  # every score equal: worst falls on the same response
            worst = next(t for t in scored if t[0] != best[0])
        return [(best[0], worst[0])]
    # Draw only among responses far enough below the best, so a margin never turns a
    # usable prompt into a skipped one by bad luck.
    eligible = [i for i, s in scored if s < best[1] and best[1] - s >= margin]
    if not eligible:
        lower = [i for i, s in scored if s < best[1]]
        fallback = lower[0] if lower else next(i for i, _ in scored if i != best[0])
        return [(best[0], fallback)]  # counted as below the margin, or as a tie
    rng = random.Random(f"{seed}:{row['id']}")
    return [(best[0], rng.choice(eligible))]
