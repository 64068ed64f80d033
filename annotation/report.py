"""The pull report: a short markdown summary, a PNG of agreement and score
distributions, and the per-record aggregates as JSONL."""

from __future__ import annotations

import json
from pathlib import Path

from annotation.pull import PulledRecord, records_table


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def plot(records: list[PulledRecord], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    annotated = [r for r in records if r.rankings]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ws = [r.kendall_w for r in annotated if r.kendall_w is not None]
    taus = [r.tau_judge for r in annotated if r.tau_judge is not None]
    axes[0].hist([ws, taus], bins=10, range=(-1, 1), label=["Kendall's W (humans)",
                                                           "tau humans vs judge"])
    axes[0].set_title("Agreement per record")
    axes[0].legend(fontsize=8)
    ratings = [v for r in annotated for v in r.ratings.values()]
    axes[1].hist(ratings, bins=[0.5, 1.5, 2.5, 3.5, 4.5, 5.5], rwidth=0.8)
    axes[1].set_title("Quality of the best response (1–5)")
    axes[1].set_xticks([1, 2, 3, 4, 5])
    scores = [s for r in records for s in r.judge_scores if s is not None]
    axes[2].hist(scores, bins=20)
    axes[2].set_title("AI judge scores")
    for ax in axes:
        ax.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(folder: str | Path, dataset: dict, records: list[PulledRecord], stats: dict,
                 pairs_path: Path | None, n_pairs: int) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png = plot(records, folder / "agreement.png")
    with open(folder / "records.jsonl", "w") as f:
        for row in records_table(records):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    lines = [
        f"# Human annotation: {dataset['name']}",
        "",
        f"- records: {stats['records']} ({stats['annotated_records']} with at least one "
        f"submitted ranking, {stats['records_with_2plus']} with two or more)",
        f"- annotators: {len(stats['annotators'])} ({', '.join(stats['annotators']) or 'none'})",
        f"- submitted responses: {stats['submitted_responses']}; discarded: "
        f"{stats['discarded_responses']}",
        f"- preference pairs written: {n_pairs}" + (f" to `{pairs_path}`" if pairs_path else ""),
        "",
        "| agreement | value |",
        "| --- | --- |",
        f"| Kendall's W between annotators (mean per record) | {_fmt(stats['kendall_w_mean'])} |",
        f"| Krippendorff's alpha, ordinal ranks | {_fmt(stats['krippendorff_alpha_ordinal'])} |",
        f"| Kendall's tau, human Borda vs AI judge (mean) | "
        f"{_fmt(stats['tau_human_vs_judge_mean'])} |",
        f"| same best response as the judge | {_fmt(stats['judge_best_agrees'])} |",
        f"| records whose top choice won an absolute majority | "
        f"{_fmt(stats['majority_absolute_share'])} |",
        f"| mean quality of the best response (1–5) | {_fmt(stats['best_quality_mean'])} |",
        "",
        "Aggregation: Borda count over each annotator's ranks (an option ranked r of n earns "
        "n − r points); pairs come from that order, and options with equal points are never "
        "paired. W and alpha need two annotators on a record; n/a means none had two.",
        "",
        f"![agreement and score distributions]({png.name})",
        "",
        "Per-record aggregates: `records.jsonl`; how well each AI judge agrees with the "
        "annotators: `align annotate calibrate --input records.jsonl`.",
    ]
    md = folder / "README.md"
    md.write_text("\n".join(lines) + "\n")
    (folder / "summary.json").write_text(json.dumps(stats, indent=2))
    return md
