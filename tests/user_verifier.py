"""A user's own verifier, imported by reference (``tests.user_verifier:mentions``)."""

from __future__ import annotations


def mentions(response: str, word: str = "align", times: int = 1) -> float:
    """Passes when `word` appears at least `times` times (plain substring count)."""
    return min(1.0, response.count(word) / times)


NOT_A_FUNCTION = 42
