"""How well each AI judge agrees with the human consensus (``align annotate calibrate``).

The input is the per-record file of ``align annotate pull --report DIR``
(``DIR/records.jsonl``): per record the annotators' rankings (``{annotator: {option:
rank}}``, 1 the best) and the judge that suggested a ranking (``judge_scores``, one per
option, else ``judge_ranks``). More judges come as ``judge_scores_<name>`` columns (one
score per option) or as ranked files (``--judges [NAME=]RANKED``) matched by ``id``, their
responses matched to the record's by text.

The human consensus is the record's Borda points, as ``align annotate pull`` aggregates
them. Per judge:

- Kendall's tau-b between the judge's scores and the humans' points, per record and
  averaged, the same measure as the pull report's "tau humans vs judge";
- top-1 agreement: how often the judge's single best response is the humans' single best
  (records where either has a tie for first are left out);
- both with a 95% percentile bootstrap interval over records;
- a reliability curve: every pair of responses the judge scored differently is binned by
  the judge's score difference, and each bin shows how often annotators preferred the
  response the judge preferred (a tie counts half). A calibrated judge climbs from 0.5
  towards 1 as its margin grows; a flat curve at 0.5 means its margins say nothing.

Judges are ranked by mean tau; the first agrees best with the people.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from alignment import agreement
from alignment.errors import DataError
from annotation import aggregation as ag

SCORE_PREFIX = "judge_scores_"


@dataclass
class HumanRecord:
    id: str
    row: int  # 1-based position in the input, for errors
    options: list[str]
    responses: list[str] | None
    rankings: dict[str, ag.Ranking]
    points: dict[str, float]


# ---------------------------------------------------------------- reading

def _options(row: dict, path: object, n: int) -> list[str]:
    rankings = row.get("rankings")
    if not isinstance(rankings, dict) or not rankings:
        raise DataError(path, "missing or empty: a record needs at least one annotator's "
                        "ranking ({annotator: {option: rank}}); use the records.jsonl of "
                        "`align annotate pull --report DIR`", row=n, field="rankings")
    options = row.get("options") or list(next(iter(rankings.values())))
    if len(options) < 2:
        raise DataError(path, f"{len(options)} candidate(s); ranking needs at least 2",
                        row=n, field="options")
    for user, ranking in rankings.items():
        if not isinstance(ranking, dict) or sorted(ranking) != sorted(options) \
                or not all(isinstance(v, int) and v >= 1 for v in ranking.values()):
            raise DataError(path, f"annotator {user!r} must give every option "
                            f"({', '.join(options)}) an integer rank >= 1", row=n,
                            field="rankings")
    return list(options)


def read_records(path: str | Path) -> tuple[list[HumanRecord], list[dict]]:
    """The annotated records (and their raw rows, for the judge columns)."""
    from alignment.data import read_rows

    rows = read_rows(path)
    if not rows:
        raise DataError(path, "no records; pull some annotations first")
    out = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, 1):
        if "id" not in row:
            raise DataError(path, "missing: records are matched by id", row=n, field="id")
        rid = str(row["id"])
        if rid in seen:
            raise DataError(path, f"id {rid!r} also on row {seen[rid]}", row=n, field="id")
        seen[rid] = n
        options = _options(row, path, n)
        responses = row.get("responses")
        if responses is not None and len(responses) != len(options):
            raise DataError(path, f"{len(responses)} responses for {len(options)} options",
                            row=n, field="responses")
        rankings = row["rankings"]
        out.append(HumanRecord(rid, n, options, responses, rankings,
                               ag.borda(rankings.values(), options)))
    return out, rows


def _scores(value, options: list[str], path: object, row: int, field: str
            ) -> list[float | None]:
    """One score per option from a list (option order) or an {option: score} mapping."""
    if isinstance(value, dict):
        value = [value.get(o) for o in options]
    if not isinstance(value, list) or len(value) != len(options):
        raise DataError(path, f"expected {len(options)} scores (one per option, in the "
                        "order of `options`) or an {option: score} mapping", row=row,
                        field=field)
    try:
        return [None if v is None else float(v) for v in value]
    except (TypeError, ValueError):
        raise DataError(path, "scores must be numbers or null", row=row, field=field) from None


def judges_in_rows(records: list[HumanRecord], rows: list[dict], path: object
                   ) -> dict[str, dict[str, list[float | None]]]:
    """{judge: {record id: scores per option}} from the records' own columns."""
    judges: dict[str, dict[str, list[float | None]]] = {}
    for rec, row in zip(records, rows):
        scores = None
        if row.get("judge_scores") is not None:
            scores = _scores(row["judge_scores"], rec.options, path, rec.row, "judge_scores")
        if (scores is None or all(s is None for s in scores)) and row.get("judge_ranks"):
            ranks = _scores(row["judge_ranks"], rec.options, path, rec.row, "judge_ranks")
            scores = [None if r is None else -r for r in ranks]  # rank 1 scores highest
        if scores is not None and any(s is not None for s in scores):
            name = str(row.get("judge") or "judge")
            judges.setdefault(name, {})[rec.id] = scores
        for key, value in row.items():
            if key.startswith(SCORE_PREFIX) and value is not None:
                judges.setdefault(key[len(SCORE_PREFIX):], {})[rec.id] = _scores(
                    value, rec.options, path, rec.row, key)
    return judges


def judge_from_file(spec: str, records: list[HumanRecord], input_path: object
                    ) -> tuple[str, dict[str, list[float | None]]]:
    """A judge's scores from a ranked file (``[NAME=]PATH``), per record id in option
    order; the judge is named NAME, else by the file's ``judge`` column, else its stem."""
    from alignment.data import read_rows

    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    rows = read_rows(path)
    by_id = {rec.id: rec for rec in records}
    scores: dict[str, list[float | None]] = {}
    for n, row in enumerate(rows, 1):
        rec = by_id.get(str(row.get("id")))
        if rec is None:
            continue
        for field in ("responses", "scores"):
            if not isinstance(row.get(field), list):
                raise DataError(path, "missing: a ranked row needs `responses` and `scores`",
                                row=n, field=field)
        if len(row["scores"]) != len(row["responses"]):
            raise DataError(path, f"{len(row['scores'])} scores for {len(row['responses'])} "
                            "responses", row=n, field="scores")
        index = _match(rec, row["responses"])
        if index is None:
            raise DataError(path, f"the responses differ from those of record {rec.id!r} "
                            f"({input_path} row {rec.row})", row=n, field="responses")
        scores[rec.id] = _scores([row["scores"][k] for k in index], rec.options, path, n,
                                 "scores")
        name = name or str(row.get("judge") or "")
    if not scores:
        raise DataError(path, f"no row's id matches a record of {input_path}: the judge must "
                        "have scored the same prompts the annotators ranked", field="id")
    return name or Path(path).stem, scores


def _match(rec: HumanRecord, responses: list[str]) -> list[int] | None:
    """Index in ``responses`` of each of the record's options (by text when the record
    carries its responses, else by position)."""
    if rec.responses is None:
        return list(range(len(responses))) if len(responses) == len(rec.options) else None
    if responses == rec.responses:
        return list(range(len(responses)))
    if sorted(responses) == sorted(rec.responses) and len(set(responses)) == len(responses):
        return [responses.index(r) for r in rec.responses]
    return None


# ---------------------------------------------------------------- figures

def bootstrap_mean(values: list[float], seed: int = 0, resamples: int = 2000) -> dict:
    """Mean and its 95% percentile bootstrap interval (records resampled)."""
    import numpy as np
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=float)
    out = {"n": len(x), "mean": float(x.mean()) if len(x) else None, "ci95": None}
    if len(x) < 2:
        return out
    if np.all(x == x[0]):  # no spread to resample
        out["ci95"] = [out["mean"], out["mean"]]
        return out
    res = bootstrap((x,), np.mean, vectorized=True, n_resamples=resamples,
                    method="percentile", confidence_level=0.95, rng=np.random.default_rng(seed))
    out["ci95"] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return out


def _human_rate(rec: HumanRecord, a: str, b: str) -> float:
    """Share of annotators ranking ``a`` above ``b`` (a tie counts half)."""
    votes = [1.0 if r[a] < r[b] else 0.5 if r[a] == r[b] else 0.0
             for r in rec.rankings.values()]
    return sum(votes) / len(votes)


def reliability(pairs: list[tuple[float, float]], bins: int) -> list[dict]:
    """Equal-width bins of the judge's margin (0, max]: pairs, mean margin, human rate."""
    if not pairs:
        return []
    top = max(d for d, _ in pairs)
    edges = [top * i / bins for i in range(bins)] + [top]  # the widest margin is in the last
    out = []
    for i in range(bins):
        lo, hi = edges[i], edges[i + 1]
        inside = [(d, y) for d, y in pairs if (lo < d <= hi) or (i == 0 and d <= hi)]
        if inside:
            out.append({"low": lo, "high": hi, "pairs": len(inside),
                        "mean_margin": sum(d for d, _ in inside) / len(inside),
                        "human_agree_rate": sum(y for _, y in inside) / len(inside)})
    return out


def judge_figures(name: str, scores: dict[str, list[float | None]],
                  records: list[HumanRecord], bins: int = 5, seed: int = 0,
                  resamples: int = 2000) -> dict:
    """Tau, top-1 and the reliability curve of one judge against the humans."""
    per_record, pairs, judge_ties, unscored = [], [], 0, 0
    for rec in records:
        if rec.id not in scores:
            continue
        given = {o: s for o, s in zip(rec.options, scores[rec.id]) if s is not None}
        if len(given) < 2:
            unscored += 1
            continue
        scored = [o for o in rec.options if o in given]
        tau = agreement.kendall_tau([rec.points[o] for o in scored],
                                    [given[o] for o in scored])
        human = ag.unique_best({o: rec.points[o] for o in scored}, higher=True)
        judge = ag.unique_best(given, higher=True)
        top1 = None if human is None or judge is None else human == judge
        per_record.append({"id": rec.id, "kendall_tau": tau, "top1": top1})
        for i, a in enumerate(scored):
            for b in scored[i + 1:]:
                d = given[a] - given[b]
                if d == 0:
                    judge_ties += 1
                    continue
                better, worse = (a, b) if d > 0 else (b, a)
                pairs.append((abs(d), _human_rate(rec, better, worse)))
    taus = [r["kendall_tau"] for r in per_record if r["kendall_tau"] is not None]
    tops = [float(r["top1"]) for r in per_record if r["top1"] is not None]
    return {
        "judge": name, "records_compared": len(per_record),
        "records_with_under_2_scores": unscored,
        "kendall_tau": bootstrap_mean(taus, seed, resamples),
        "records_tau_undefined": len(per_record) - len(taus),
        "top1_agreement": bootstrap_mean(tops, seed, resamples),
        "pairs": {"judge_decided": len(pairs), "judge_ties": judge_ties,
                  "human_agree_rate": sum(y for _, y in pairs) / len(pairs) if pairs else None},
        "reliability": reliability(pairs, bins),
        "per_record": per_record,
    }


def calibrate(records: list[HumanRecord], judges: dict[str, dict[str, list[float | None]]],
              input_path: object, bins: int = 5, seed: int = 0, resamples: int = 2000) -> dict:
    """Every judge's figures, best-agreeing (highest mean tau) first."""
    if not judges:
        raise DataError(input_path, "no judge scores: rows need `judge_scores`, `judge_ranks` "
                        f"or `{SCORE_PREFIX}<name>` columns, or pass --judges RANKED",
                        field="judge_scores")
    figures = []
    for name, scores in judges.items():
        f = judge_figures(name, scores, records, bins, seed, resamples)
        if f["records_compared"] == 0:
            raise DataError(input_path, f"judge {name!r} scored fewer than 2 responses on "
                            "every record it shares with the annotators", field="judge_scores")
        figures.append(f)

    def key(f: dict) -> tuple:
        tau = f["kendall_tau"]["mean"]
        return (tau is None, -(tau if tau is not None else 0.0), f["judge"])

    figures.sort(key=key)
    best = figures[0]["judge"] if figures[0]["kendall_tau"]["mean"] is not None else None
    return {"input": str(input_path), "records": len(records),
            "annotators": sorted({a for r in records for a in r.rankings}),
            "bootstrap": {"resamples": resamples, "seed": seed, "method": "percentile",
                          "unit": "record"},
            "bins": bins, "best_judge": best, "judges": figures}


# ---------------------------------------------------------------- output

def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _interval(fig: dict) -> str:
    ci = fig["ci95"]
    return f"{_fmt(fig['mean'])} [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else _fmt(fig["mean"])


def format_table(result: dict) -> str:
    rows = [("judge", "records", "Kendall tau [95% CI]", "top-1 [95% CI]", "pairs agree")]
    for f in result["judges"]:
        rows.append((f["judge"], str(f["records_compared"]), _interval(f["kendall_tau"]),
                     _interval(f["top1_agreement"]), _fmt(f["pairs"]["human_agree_rate"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"best agreement with the annotators: {result['best_judge'] or 'n/a'} "
                 f"({result['records']} records, {len(result['annotators'])} annotators)")
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> Path:
    """One reliability curve per judge, in its own score units, with the pairs per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alignment.data.io import write_file

    judges = result["judges"]
    cols = min(len(judges), 3)
    rows = math.ceil(len(judges) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(judges):]:
        ax.set_visible(False)
    for ax, f in zip(axes.flat, judges):
        xs = [b["mean_margin"] for b in f["reliability"]]
        ys = [b["human_agree_rate"] for b in f["reliability"]]
        ax.plot(xs, ys, marker="o")
        for x, y, b in zip(xs, ys, f["reliability"]):
            ax.annotate(f"n={b['pairs']}", (x, y), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1.1)
        ax.set_xlabel("judge score margin (its preferred minus the other)")
        ax.set_ylabel("annotators preferring the judge's pick")
        ax.set_title(f"{f['judge']}: tau {_fmt(f['kendall_tau']['mean'])}", fontsize=9)
    fig.tight_layout()
    try:
        return write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def write_json(result: dict, path: str | Path) -> Path:
    from alignment.data.io import write_file

    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    return write_file(path, lambda tmp: tmp.write_text(text))


def run(input_path: str | Path, judge_files: list[str] | None = None,
        output: str | Path | None = None, plot_path: str | Path | None = None,
        bins: int = 5, seed: int = 0, resamples: int = 2000) -> tuple[dict, Path, Path]:
    """Read, measure, write the JSON and the plot; returns (figures, json path, png path)."""
    records, rows = read_records(input_path)
    judges = judges_in_rows(records, rows, input_path)
    for spec in judge_files or []:
        name, scores = judge_from_file(spec, records, input_path)
        if name in judges:
            name = f"{name} ({Path(spec.rpartition('=')[2]).name})"
        judges[name] = scores
    result = calibrate(records, judges, input_path, bins, seed, resamples)
    output = Path(output) if output else Path(input_path).parent / "calibration.json"
    plot_path = Path(plot_path) if plot_path else output.with_suffix(".png")
    result["plot"] = str(plot_path)
    json_path = write_json(result, output)
    return result, json_path, plot(result, plot_path)
