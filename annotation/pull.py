"""Pull human rankings from Argilla: aggregate, measure agreement, write pairs.

Every annotator's *submitted* response is read over the REST API (ranks sorted by
``rank``, never by list order). Per record the rankings are aggregated by Borda
count and by majority of top choices; over the dataset we report Kendall's W,
Krippendorff's alpha (ordinal) and the humans' agreement with the AI judge
(Kendall's tau-b, and how often both pick the same best response). Each record's mean
Borda points become a ranked row, paired by the data layer's ``ranked_to_pairs``, so
human and AI rankings turn into TRL pairs (``align dpo --dataset``) by the same rules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from alignment import agreement
from alignment.errors import ConfigError
from annotation import aggregation as ag
from annotation import records as rec
from annotation.client import ArgillaClient, ArgillaError

@dataclass
class PulledRecord:
    id: str
    prompt: str | list
    responses: list[str]
    options: list[str]
    rankings: dict[str, ag.Ranking]  # annotator -> ranking
    ratings: dict[str, int]
    comments: dict[str, str]
    judge_ranks: ag.Ranking | None
    judge_scores: list[float | None]
    discarded: int = 0
    borda: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    majority: str | None = None
    majority_absolute: bool = False
    kendall_w: float | None = None
    tau_judge: float | None = None
    judge: str | None = None  # the suggesting judge's agent name


def _ranking(value: list[dict]) -> ag.Ranking:
    items = sorted(value, key=lambda item: item["rank"])
    return {item["value"]: int(item["rank"]) for item in items}


def fetch(client: ArgillaClient, dataset_name: str,
          workspace: str | None = None) -> tuple[dict, list[PulledRecord], dict[str, str]]:
    """(dataset, records, {user id: username}) with every submitted response."""
    ws_id = None
    if workspace:
        ws = client.workspace(workspace)
        if ws is None:
            raise ConfigError(f"no workspace {workspace!r} on {client.connection.url}")
        ws_id = ws["id"]
    ds = client.dataset(dataset_name, ws_id)
    if ds is None:
        raise ConfigError(f"no dataset {dataset_name!r} on {client.connection.url}; "
                          "push it first (`align annotate push`)")
    questions = {q["name"]: q for q in client.questions(ds["id"])}
    if rec.RANKING not in questions:
        raise ConfigError(f"dataset {dataset_name!r} has no `{rec.RANKING}` question; "
                          "it was not made by `align annotate push`")
    options = [o["value"] for o in questions[rec.RANKING]["settings"]["options"]]
    by_id = {q["id"]: name for name, q in questions.items()}
    try:
        names = {u["id"]: u["username"] for u in client.users()}
    except ArgillaError:  # an annotator's key may not list users: keep ids
        names = {}
    out = []
    for r in client.records(ds["id"], include=("responses", "suggestions")):
        fields = r["fields"]
        pulled = PulledRecord(
            id=r.get("external_id") or r["id"], prompt=fields[rec.PROMPT],
            responses=[fields[o] for o in options], options=options, rankings={},
            ratings={}, comments={}, judge_ranks=None,
            judge_scores=[(r.get("metadata") or {}).get(f"judge_score_{i + 1}")
                          for i in range(len(options))])
        for s in r.get("suggestions") or []:
            if by_id.get(s["question_id"]) == rec.RANKING:
                pulled.judge_ranks = _ranking(s["value"])
                pulled.judge = s.get("agent")
        for resp in r.get("responses") or []:
            if resp["status"] == "discarded":
                pulled.discarded += 1
            if resp["status"] != "submitted":
                continue
            user = names.get(resp["user_id"], resp["user_id"])
            values = resp.get("values") or {}
            if rec.RANKING in values:
                pulled.rankings[user] = _ranking(values[rec.RANKING]["value"])
            if rec.RATING in values:
                pulled.ratings[user] = int(values[rec.RATING]["value"])
            if values.get(rec.COMMENT, {}).get("value"):
                pulled.comments[user] = values[rec.COMMENT]["value"]
        out.append(pulled)
    return ds, out, names


def aggregate(records: list[PulledRecord]) -> None:
    """Fill each record's Borda points, order, majority, W and tau with the judge."""
    for r in records:
        rankings = list(r.rankings.values())
        if not rankings:
            continue
        r.borda = ag.borda(rankings, r.options)
        r.order = ag.order_by_points(r.borda, r.options)
        r.majority, r.majority_absolute, _ = ag.majority(rankings, r.options)
        r.kendall_w = agreement.kendall_w(rankings, r.options)
        if r.judge_ranks:
            # tau between human points (higher better) and judge ranks negated (same sense)
            r.tau_judge = agreement.kendall_tau([r.borda[o] for o in r.options],
                                                [-r.judge_ranks[o] for o in r.options])


def summary(records: list[PulledRecord]) -> dict:
    annotated = [r for r in records if r.rankings]
    annotators = sorted({a for r in records for a in r.rankings})
    same_best = []
    for r in annotated:
        human = ag.unique_best(r.borda, higher=True)
        judge = ag.unique_best(r.judge_ranks or {}, higher=False)
        if human and judge:
            same_best.append(human == judge)
    return {
        "records": len(records),
        "annotated_records": len(annotated),
        "annotators": annotators,
        "submitted_responses": sum(len(r.rankings) for r in records),
        "discarded_responses": sum(r.discarded for r in records),
        "records_with_2plus": sum(len(r.rankings) >= 2 for r in records),
        "kendall_w_mean": ag.mean(r.kendall_w for r in annotated),
        "krippendorff_alpha_ordinal": agreement.krippendorff_alpha(
            [(r.options, r.rankings) for r in annotated], annotators),
        "tau_human_vs_judge_mean": ag.mean(r.tau_judge for r in annotated),
        "judge_best_agrees": (sum(same_best) / len(same_best)) if same_best else None,
        "majority_absolute_share": (sum(r.majority_absolute for r in annotated) / len(annotated)
                                    if annotated else None),
        "best_quality_mean": ag.mean(v for r in annotated for v in r.ratings.values()),
    }


def to_ranked(records: list[PulledRecord], min_annotators: int = 1) -> list[dict]:
    """Ranked rows (docs/schemas.md) of the annotated records: each option's score is its
    mean Borda points (``n_options - 1`` means every annotator ranked it first)."""
    return [{"id": r.id, "prompt": r.prompt, "responses": r.responses,
             "scores": [r.borda[o] / len(r.rankings) for o in r.options]}
            for r in records if len(r.rankings) >= min_annotators and r.order]


def to_pairs(records: list[PulledRecord], strategy: str = "best-worst",
             min_annotators: int = 1, seed: int = 0) -> list[dict]:
    """TRL pairs from the Borda points, by ``alignment.data.ranked_to_pairs``; options
    with equal points never pair."""
    from alignment.data import STRATEGIES, ranked_to_pairs

    if strategy not in STRATEGIES:
        raise ConfigError(f"--pairs {strategy!r}: choose one of {STRATEGIES}")
    pairs, _ = ranked_to_pairs(to_ranked(records, min_annotators), strategy, seed=seed)
    return pairs


def write_pairs(pairs: list[dict], path: str | os.PathLike) -> Path:
    from alignment.data import write_rows

    return write_rows(pairs, path)


def records_table(records: list[PulledRecord]) -> list[dict]:
    """One row per annotated record, for the report folder (and ``align annotate
    calibrate``, which reads the options, responses and judge scores back)."""
    return [{"id": r.id, "options": r.options, "responses": r.responses,
             "annotators": sorted(r.rankings), "rankings": r.rankings,
             "borda": r.borda, "order": r.order, "majority": r.majority,
             "majority_absolute": r.majority_absolute, "kendall_w": r.kendall_w,
             "judge": r.judge, "judge_ranks": r.judge_ranks, "judge_scores": r.judge_scores,
             "tau_human_vs_judge": r.tau_judge,
             "best_quality": r.ratings, "comments": r.comments}
            for r in records if r.rankings]
