"""Strict parsers of a judge's answers, and scores into ranks.

Text that does not match the asked-for format is a parse failure (None), kept raw by the
caller and counted in the card; it is never coerced into a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from alignment.rubrics import LABELS


def _json_object(text: str) -> dict | None:
    """The text as one JSON object (an optional ```json fence allowed), else None."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fence:
        body = fence.group(1)
    if not body.startswith("{"):
        return None
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


_RATING_LINE = re.compile(r"Rating:[ \t]*(\d+)[ \t]*", re.IGNORECASE)


_RATIONALE = re.compile(r"Rationale:[ \t]*(.*)", re.IGNORECASE | re.DOTALL)


def parse_rating(text: str | None, scale: tuple[int, int]) -> tuple[int | None, str | None]:
    """(rating, rationale) from ``Rating: N`` [``Rationale: ...``] or a JSON object
    ``{"rating": N, "rationale": "..."}``; (None, None) for anything else.

    Strict on purpose: the first line must be the rating, a whole number inside the
    scale, and whatever follows must be the rationale. "I'd say 4" or "Rating: 4/5" or
    a rating of 7 on a 1..5 scale is a parse failure, not a 4 or a 5.
    """
    if not text:
        return None, None
    low, high = scale
    obj = _json_object(text)
    if obj is not None:
        keys = {k.lower(): v for k, v in obj.items()}
        value, why = keys.get("rating"), keys.get("rationale")
        if set(keys) - {"rating", "rationale"} or isinstance(value, bool) \
                or not isinstance(value, int) or not low <= value <= high:
            return None, None
        return value, why if isinstance(why, str) else None
    head, _, rest = text.strip().partition("\n")
    m = _RATING_LINE.fullmatch(head.strip())
    if not m or not low <= int(m.group(1)) <= high:
        return None, None
    rest = rest.strip()
    if not rest:
        return int(m.group(1)), None
    why = _RATIONALE.fullmatch(rest)
    return (int(m.group(1)), why.group(1).strip()) if why else (None, None)


def parse_ranking(text: str | None, k: int) -> list[int] | None:
    """Indices of the k responses from best to worst, from ``Ranking: C > A > B`` (also
    ``[C] > [A] > [B]``, commas, or JSON ``{"ranking": ["C", "A", "B"]}``); None unless
    the answer names every label exactly once and nothing else."""
    if not text:
        return None
    labels = LABELS[:k]
    obj = _json_object(text)
    if obj is not None:
        value = obj.get("ranking")
        if set(obj) != {"ranking"} or not isinstance(value, list) \
                or not all(isinstance(v, str) for v in value):
            return None
        items = [v.strip().strip("[]").strip() for v in value]
    else:
        line = text.strip()
        if "\n" in line:
            return None
        line = re.sub(r"^Ranking:\s*", "", line, flags=re.IGNORECASE)
        items = [p.strip().strip("[]").strip() for p in re.split(r">|,", line)]
    if sorted(items) != sorted(labels):
        return None
    return [labels.index(x) for x in items]


def parse_verdict(text: str | None) -> str | None:
    """"A" or "B" from ``Verdict: A`` (also a bare ``A``, ``[[A]]``, or JSON
    ``{"verdict": "A"}``); None for anything else, ties and explanations included."""
    if not text:
        return None
    obj = _json_object(text)
    if obj is not None:
        value = obj.get("verdict")
        return value if set(obj) == {"verdict"} and value in ("A", "B") else None
    line = text.strip()
    line = re.sub(r"^Verdict:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("[]").strip().rstrip(".")
    return line if line in ("A", "B") else None


def ranks_from_scores(scores: Sequence[float | None]) -> list[int | None]:
    """1 = best; responses without a score get no rank; ties share the better rank."""
    known = sorted({s for s in scores if s is not None}, reverse=True)
    better = {s: sum(1 for t in scores if t is not None and t > s) for s in known}
    return [None if s is None else better[s] + 1 for s in scores]
