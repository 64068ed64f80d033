"""Aggregating several annotators' rankings into one.

A ranking is ``{option: rank}`` with rank 1 the best; ties share a rank. How much the
annotators agree (Kendall's W, Krippendorff's alpha, tau with the judge) is measured by
``alignment.agreement``, which also measures judges against judges.

- Borda count: an option ranked r of n earns n − r points from that annotator;
  the aggregate orders options by total points.
- Majority: each annotator's top choice is one vote (split evenly when they tie
  several options first); the winner has the most votes, and ``absolute`` says
  whether it won more than half.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

from alignment.agreement import Ranking


def borda(rankings: Iterable[Ranking], options: list[str]) -> dict[str, float]:
    n = len(options)
    points = {o: 0.0 for o in options}
    for ranking in rankings:
        for option in options:
            points[option] += n - ranking[option]
    return points


def order_by_points(points: dict[str, float], options: list[str]) -> list[str]:
    """Best first; equal points keep the options' own order."""
    return sorted(options, key=lambda o: (-points[o], options.index(o)))


def ranks_from_points(points: dict[str, float], options: list[str]) -> Ranking:
    """Competition ranks (1, 1, 3, ...) from points, higher points better."""
    return {o: 1 + sum(points[p] > points[o] for p in options) for o in options}


def majority(rankings: list[Ranking], options: list[str]) -> tuple[str | None, bool, dict]:
    """(winner or None on a tie for most votes, absolute majority?, votes per option)."""
    votes: Counter = Counter({o: 0.0 for o in options})
    for ranking in rankings:
        best = min(ranking.values())
        tops = [o for o in options if ranking[o] == best]
        for o in tops:
            votes[o] += 1 / len(tops)
    if not rankings:
        return None, False, dict(votes)
    most = max(votes.values())
    leaders = [o for o in options if math.isclose(votes[o], most)]
    winner = leaders[0] if len(leaders) == 1 else None
    return winner, bool(winner and most > len(rankings) / 2), dict(votes)


def unique_best(values: dict, higher: bool) -> str | None:
    """The one key with the best value, or None when several share it (or none given)."""
    if not values:
        return None
    best = max(values.values()) if higher else min(values.values())
    tops = [k for k, v in values.items() if v == best]
    return tops[0] if len(tops) == 1 else None


def mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None and not math.isnan(v)]
    return sum(xs) / len(xs) if xs else None
