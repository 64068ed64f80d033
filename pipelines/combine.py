"""Combine several judges' scores of the same responses, and report how far they agree.

    align generate combine uf.jsonl helpsteer.jsonl rm.jsonl --method mean -o combined.jsonl

Rows are matched by ``id`` and responses by index (or by text, when a judge's file
lists the same responses in another order); rows missing from any input, or whose
responses differ, are dropped and counted. Per response:

- ``--method mean``: the mean of the judges' non-null scores, weighted by ``--weights``
  (one per input, default all 1);
- ``--method majority``: the most common score after rounding to a whole number
  (for judges on one integer scale), each judge's vote counting its weight; a tie takes
  the median of the tied values.

Judges on different scales (1..5 ratings, 0..1 win rates, reward logits) should be put
on one with ``--normalize minmax`` (each judge's scores mapped to [0, 1] over the whole
dataset) before a mean; weights only mean what they say on comparable scales. E.g.
verifier scores (``align generate verify``, 0..1) mixed 1:3 with a rating judge:
``combine verified.jsonl uf.jsonl --normalize minmax --weights 1 3``. A judge of
weight 0 is left out of the scores but not of the agreement.

Agreement is reported on the scores that are combined: weighted Cohen's kappa
(quadratic, on rounded scores) for two judges, Fleiss' kappa and mean pairwise kappa
for more, and the mean Kendall tau of each row's ranking.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter

METHODS = ("mean", "majority")


def _aligned(base: dict, other: dict) -> list[int] | None:
    """Index in ``other`` of each of ``base``'s responses, or None if they differ."""
    if other["responses"] == base["responses"]:
        return list(range(len(base["responses"])))
    if sorted(other["responses"]) == sorted(base["responses"]) \
            and len(set(base["responses"])) == len(base["responses"]):
        return [other["responses"].index(r) for r in base["responses"]]
    return None


def _minmax(values: list[list[float | None]]) -> list[list[float | None]]:
    known = [s for row in values for s in row if s is not None]
    if not known:
        return values
    lo, hi = min(known), max(known)
    span = hi - lo
    return [[None if s is None else (0.5 if span == 0 else (s - lo) / span) for s in row]
            for row in values]


def _majority(values: list[float], weights: list[float]) -> float:
    counts: Counter = Counter()
    for v, w in zip(values, weights):
        counts[round(v)] += w
    top = max(counts.values())
    return float(statistics.median(sorted(v for v, c in counts.items() if c == top)))


def combine(datasets: list[list[dict]], method: str = "mean",
            normalize: str = "none", names: list[str] | None = None,
            weights: list[float] | None = None) -> tuple[list[dict], dict]:
    """Merge the judges' ranked rows; returns (rows, info with counts and agreement).

    ``weights``: one per dataset (default all 1), for the mean and the majority vote."""
    from alignment.errors import ConfigError
    from alignment.agreement import judge_agreement
    from pipelines.verdicts import ranks_from_scores

    if len(datasets) < 2:
        raise ConfigError("combine needs at least two judged datasets")
    if method not in METHODS:
        raise ConfigError(f"--method {method}: expected one of {', '.join(METHODS)}")
    names = names or [f"{i + 1}:{d[0]['judge'] if d else 'empty'}"
                      for i, d in enumerate(datasets)]
    weights = _check_weights(weights, len(datasets))
    by_id = [{r["id"]: r for r in d} for d in datasets]
    counts = {"rows_in_first": len(datasets[0]), "rows_missing_in_some_input": 0,
              "rows_with_different_responses": 0}
    matched = []  # (base row, per judge: scores in base order)
    for row in datasets[0]:
        others = [b.get(row["id"]) for b in by_id]
        if any(o is None for o in others):
            counts["rows_missing_in_some_input"] += 1
            continue
        maps = [_aligned(row, o) for o in others]
        if any(m is None for m in maps):
            counts["rows_with_different_responses"] += 1
            continue
        matched.append((row, [[o["scores"][k] for k in m] for o, m in zip(others, maps)]))
    per_judge = [[scores[j] for _, scores in matched] for j in range(len(datasets))]
    if normalize == "minmax":
        per_judge = [_minmax(v) for v in per_judge]
    elif normalize != "none":
        raise ConfigError(f"--normalize {normalize}: expected none or minmax")
    out = []
    for r, (row, _) in enumerate(matched):
        scores, raw = [], []
        for k in range(len(row["responses"])):
            given = {names[j]: per_judge[j][r][k] for j in range(len(datasets))}
            known = [(v, weights[j]) for j, v in enumerate(given.values())
                     if v is not None and weights[j] > 0]
            scores.append(None if not known else _merge(known, method))
            raw.append(json.dumps(given, ensure_ascii=False))
        out.append({"id": row["id"], "prompt": row["prompt"], "responses": row["responses"],
                    "models": row["models"], "scores": scores,
                    "ranks": ranks_from_scores(scores),
                    "judge": f"combined {method} of {len(datasets)} judges",
                    "judge_raw": raw, "ratings": [json.loads(x) for x in raw]})
    counts["rows"] = len(out)
    judged = {n: per_judge[j] for j, n in enumerate(names)}
    info = {"method": method, "normalize": normalize, "judges": names,
            "weights": dict(zip(names, weights)), "counts": counts,
            "agreement": judge_agreement(judged) if out else None}
    return out, info


def _check_weights(weights: list[float] | None, n: int) -> list[float]:
    from alignment.errors import ConfigError

    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ConfigError(f"--weights has {len(weights)} value(s) for {n} inputs; give one "
                          "weight per input, in the order of the inputs")
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ConfigError(f"--weights {' '.join(map(str, weights))}: weights must be >= 0 and "
                          "at least one > 0")
    return [float(w) for w in weights]


def _merge(known: list[tuple[float, float]], method: str) -> float:
    if method == "majority":
        return _majority([v for v, _ in known], [w for _, w in known])
    return sum(v * w for v, w in known) / sum(w for _, w in known)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="align generate combine", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="two or more judged ranked datasets")
    ap.add_argument("--output", "-o", required=True, help="combined ranked dataset")
    ap.add_argument("--method", choices=METHODS, default="mean",
                    help="how to merge scores (default: %(default)s)")
    ap.add_argument("--normalize", choices=("none", "minmax"), default="none",
                    help="map each judge's scores to [0, 1] first (default: %(default)s)")
    ap.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                    help="one weight per input, in their order (default: all 1); they "
                         "need comparable scales: use with --normalize minmax")
    return ap


def main(argv: list[str] | None = None) -> int:
    from pipelines.judging import read_input, write_output

    args = parser().parse_args(argv)
    rows, info = combine([read_input(p) for p in args.inputs], args.method, args.normalize,
                         weights=args.weights)
    path = write_output(rows, args.output, "align combined judges",
                        {**info, "inputs": args.inputs})
    a = info["agreement"] or {}
    keys = ("weighted_kappa", "kendall_tau", "fleiss_kappa", "mean_pairwise_weighted_kappa",
            "mean_pairwise_kendall_tau")
    shown = ", ".join(f"{k} {a[k]}" for k in keys if k in a)
    print(f"wrote {info['counts']['rows']} rows to {path}; agreement: {shown or 'n/a'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
