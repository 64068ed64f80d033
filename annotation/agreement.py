"""Aggregating several annotators' rankings, and how much they agree.

A ranking is ``{option: rank}`` with rank 1 the best; ties share a rank.

- Borda count: an option ranked r of n earns n − r points from that annotator;
  the aggregate orders options by total points.
- Majority: each annotator's top choice is one vote (split evenly when they tie
  several options first); the winner has the most votes, and ``absolute`` says
  whether it won more than half.
- Kendall's W (coefficient of concordance, with the correction for ties) per record:
  1 when all annotators rank alike, 0 when their rankings cancel out.
- Krippendorff's alpha (ordinal) over every (record, response) unit, the rank
  being the value each annotator assigned.
- Kendall's tau-b between the humans' Borda points and the judge's ranks per record.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

Ranking = dict[str, int]


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


def kendall_w(rankings: list[Ranking], options: list[str]) -> float | None:
    """Kendall's W with tie correction; None for fewer than 2 annotators or options,
    or when every annotator ties every option."""
    m, n = len(rankings), len(options)
    if m < 2 or n < 2:
        return None
    # ties must be mid-ranks for W: an option tied at competition rank r over t options
    # gets r + (t − 1)/2
    mid = []
    for ranking in rankings:
        counts = Counter(ranking[o] for o in options)
        mid.append({o: ranking[o] + (counts[ranking[o]] - 1) / 2 for o in options})
    sums = [sum(r[o] for r in mid) for o in options]
    mean = sum(sums) / n
    s = sum((x - mean) ** 2 for x in sums)
    ties = sum(sum(t ** 3 - t for t in Counter(ranking[o] for o in options).values())
               for ranking in rankings)
    denominator = m * m * (n ** 3 - n) - m * ties
    return None if denominator == 0 else 12 * s / denominator


def krippendorff_alpha(records: list[tuple[list[str], dict[str, Ranking]]],
                       annotators: list[str]) -> float | None:
    """Ordinal alpha over (record, option) units; None when no unit has two values."""
    import numpy as np

    units = [(opts, by_user) for opts, by_user in records if len(by_user) >= 2]
    if not units:
        return None
    columns = []
    for options, by_user in units:
        for o in options:
            columns.append([by_user[a][o] if a in by_user else np.nan for a in annotators])
    data = np.array(columns, dtype=float).T  # annotators x units
    values = set(data[~np.isnan(data)].tolist())
    if len(values) < 2:
        return 1.0  # every value identical: nothing to disagree on
    import krippendorff

    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))


def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Kendall's tau-b; None when either side is constant."""
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return None if denominator == 0 else (concordant - discordant) / denominator


def mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None and not math.isnan(v)]
    return sum(xs) / len(xs) if xs else None
