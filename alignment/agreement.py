"""How much raters agree: judges with judges (``align generate combine``) and annotators
with each other and with the AI judge (``align annotate pull``).

- Kendall's tau-b between two rankings of the same items (``scipy.stats.kendalltau``),
  and its mean over rows.
- Cohen's kappa of two raters' integer ratings (unweighted, linear or quadratic), and
  Fleiss' kappa of several raters per item.
- Kendall's W (coefficient of concordance, with the correction for ties) of several
  annotators' rankings of one record: 1 when all rank alike, 0 when they cancel out.
- Krippendorff's alpha (ordinal) over every (record, response) unit, the rank being the
  value each annotator assigned (the ``krippendorff`` package, from the annotation extra).

scipy has no kappa, W or alpha; scikit-learn's ``cohen_kappa_score`` would be the one
library replacement, and it is not a dependency. Those are computed here from their
textbook formulas, each checked against values worked out by hand in the tests.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

Ranking = dict[str, int]  # option -> rank, 1 the best; ties share a rank


# ---------------------------------------------------------------- Kendall's tau

def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b of two equally long score lists; None when either is constant
    (or shorter than two)."""
    from scipy.stats import kendalltau

    if len(a) < 2:
        return None
    tau = kendalltau(a, b).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def mean_kendall_tau(a: Sequence[Sequence[float | None]],
                     b: Sequence[Sequence[float | None]]) -> tuple[float | None, int]:
    """Mean Kendall tau-b between two judges' scores of each row's responses (rows where
    either judge left fewer than two responses scored, or tau is undefined, are
    skipped); returns (mean tau, rows used)."""
    taus = []
    for xs, ys in zip(a, b):
        both = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
        tau = kendall_tau([x for x, _ in both], [y for _, y in both])
        if tau is not None:
            taus.append(tau)
    return (sum(taus) / len(taus) if taus else None), len(taus)


# ---------------------------------------------------------------- kappas

def cohen_kappa(a: Sequence[int], b: Sequence[int], weights: str | None = "quadratic") -> float:
    """Cohen's kappa of two raters' integer ratings; ``weights``: None, "linear" or
    "quadratic" (disagreements cost their distance, or its square)."""
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two equally long, non-empty rating lists")
    cats = sorted(set(a) | set(b))
    if len(cats) == 1:
        return 1.0  # both raters gave one and the same rating everywhere
    idx = {c: i for i, c in enumerate(cats)}
    n, k = len(a), len(cats)
    obs = [[0.0] * k for _ in range(k)]
    for x, y in zip(a, b):
        obs[idx[x]][idx[y]] += 1 / n
    pa = [sum(row) for row in obs]
    pb = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    span = cats[-1] - cats[0]

    def cost(i: int, j: int) -> float:
        if weights is None:
            return float(i != j)
        d = abs(cats[i] - cats[j]) / span
        return d if weights == "linear" else d * d

    observed = sum(cost(i, j) * obs[i][j] for i in range(k) for j in range(k))
    expected = sum(cost(i, j) * pa[i] * pb[j] for i in range(k) for j in range(k))
    return 1.0 - observed / expected if expected > 0 else 1.0


def fleiss_kappa(ratings: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa: ``ratings[item]`` holds every rater's category for that item."""
    cats = sorted({c for item in ratings for c in item})
    if len(cats) < 2:
        return 1.0
    n = len(ratings[0])
    if n < 2 or any(len(item) != n for item in ratings):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters per item")
    counts = [[item.count(c) for c in cats] for item in ratings]
    p_item = [(sum(x * x for x in row) - n) / (n * (n - 1)) for row in counts]
    p_cat = [sum(row[j] for row in counts) / (len(ratings) * n) for j in range(len(cats))]
    p_bar, p_exp = sum(p_item) / len(p_item), sum(p * p for p in p_cat)
    return (p_bar - p_exp) / (1 - p_exp) if p_exp < 1 else 1.0


def judge_agreement(judges: dict[str, list[list[float | None]]]) -> dict:
    """Agreement of several judges' scores over the same rows and responses.

    Kappa is computed on scores rounded to whole numbers (meaningful when the judges
    share a rating scale), over the responses every judge scored; Kendall's tau on
    each row's ranking of its responses."""
    names = list(judges)
    flat = [[s for row in judges[n] for s in row] for n in names]
    common = [i for i in range(len(flat[0])) if all(f[i] is not None for f in flat)]
    rounded = [[int(round(f[i])) for i in common] for f in flat]
    pairs = {}
    for x in range(len(names)):
        for y in range(x + 1, len(names)):
            tau, used = mean_kendall_tau(judges[names[x]], judges[names[y]])
            pairs[f"{names[x]} vs {names[y]}"] = {
                "weighted_kappa": round(cohen_kappa(rounded[x], rounded[y]), 4)
                if common else None,
                "kendall_tau": None if tau is None else round(tau, 4), "rows_for_tau": used}
    out: dict[str, Any] = {"judges": names, "responses_scored_by_all": len(common),
                           "pairwise": pairs}
    if len(names) == 2:
        only = next(iter(pairs.values()))
        out.update(weighted_kappa=only["weighted_kappa"], kendall_tau=only["kendall_tau"])
    else:
        kappas = [p["weighted_kappa"] for p in pairs.values() if p["weighted_kappa"] is not None]
        taus = [p["kendall_tau"] for p in pairs.values() if p["kendall_tau"] is not None]
        out.update(
            fleiss_kappa=round(fleiss_kappa([[r[i] for r in rounded]
                                             for i in range(len(common))]), 4) if common else None,
            mean_pairwise_weighted_kappa=round(sum(kappas) / len(kappas), 4) if kappas else None,
            mean_pairwise_kendall_tau=round(sum(taus) / len(taus), 4) if taus else None)
    return out


# ---------------------------------------------------------------- several annotators' rankings

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
