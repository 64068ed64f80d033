"""Ranked rows as an Argilla dataset: its settings, and one record per row.

Field and question names are fixed so pull can read any dataset push wrote:

- ``prompt``: a TextField, or a ChatField when the prompt is a conversation;
- ``response_1`` .. ``response_N``: TextFields;
- ``ranking``: RankingQuestion over ``response_1`` .. ``response_N`` (1 = best);
- ``best_quality``: RatingQuestion 1–5, the quality of the response ranked first;
- ``comment``: optional TextQuestion.

The AI judge's ranking (and, where its scale allows, a rating) are suggestions with
a score in [0, 1]; the source, the judge's raw scores and the response lengths are
metadata, so an annotator or a curator can filter and sort on them.
"""

from __future__ import annotations

import math
import re
from typing import Any

from alignment.errors import DataError

RANKING, RATING, COMMENT, PROMPT = "ranking", "best_quality", "comment", "prompt"

GUIDELINES = """\
## Rank the responses

Read the prompt, then order the responses from best (rank 1) to worst.
A better response is correct, follows the instructions, is helpful and honest,
and is no longer than it needs to be. Give two responses the same rank only when
you truly cannot tell them apart.

Then rate the quality of the response you ranked first (1 = unusable, 5 = excellent),
and leave a comment if something is off (a broken prompt, all responses wrong, ...).

The AI judge's ranking is shown as a suggestion: check it, do not copy it.
Discard a record only if it cannot be judged at all (empty or garbled prompt).
"""


def response_name(i: int) -> str:
    return f"response_{i + 1}"


def is_chat(prompt: Any) -> bool:
    return isinstance(prompt, list)


def check_rows(rows: list[dict], path: object) -> int:
    """Every row needs the same number of responses (a ranking question has a fixed
    set of options); returns it."""
    if not rows:
        raise DataError(path, "no rows to push")
    counts = {len(r["responses"]) for r in rows}
    if len(counts) > 1:
        by = {}
        for i, r in enumerate(rows, 1):
            by.setdefault(len(r["responses"]), i)
        raise DataError(path, "rows have different numbers of responses "
                        f"({', '.join(f'{n} from row {i}' for n, i in sorted(by.items()))}); "
                        "a ranking needs the same options on every record: split the file by "
                        "response count and push each part as its own dataset", field="responses")
    n = counts.pop()
    if n < 2:
        raise DataError(path, f"every row needs at least 2 responses to rank, found {n}",
                        field="responses")
    chats = {is_chat(r["prompt"]) for r in rows}
    if len(chats) > 1:
        raise DataError(path, "some prompts are conversations and some plain text; push them "
                        "as two datasets", field="prompt")
    seen: dict[str, int] = {}
    for i, r in enumerate(rows, 1):
        if str(r["id"]) in seen:
            raise DataError(path, f"id {r['id']!r} also on row {seen[str(r['id'])]}: ids key "
                            "the records and must be unique", row=i, field="id")
        seen[str(r["id"])] = i
    return n


def score_range(rows: list[dict]) -> tuple[float, float] | None:
    scores = [s for r in rows for s in r.get("scores") or [] if s is not None]
    return (min(scores), max(scores)) if scores else None


def dataset_settings(n: int, chat: bool, score_range_: tuple[float, float] | None) -> dict:
    """Fields, questions and metadata properties as Argilla's REST API takes them."""
    fields = [{"name": PROMPT, "title": "Prompt", "required": True,
               "settings": {"type": "chat" if chat else "text", "use_markdown": True}}]
    fields += [{"name": response_name(i), "title": f"Response {i + 1}", "required": True,
                "settings": {"type": "text", "use_markdown": True}} for i in range(n)]
    questions = [
        {"name": RANKING, "title": "Rank the responses (1 = best)", "required": True,
         "description": "Order every response from best to worst.",
         "settings": {"type": "ranking", "options": [
             {"value": response_name(i), "text": f"Response {i + 1}"} for i in range(n)]}},
        {"name": RATING, "title": "Quality of the best response (1–5)", "required": True,
         "settings": {"type": "rating", "options": [{"value": v} for v in range(1, 6)]}},
        {"name": COMMENT, "title": "Comment (optional)", "required": False,
         "settings": {"type": "text", "use_markdown": False}},
    ]
    # Argilla validates every metadata value of every record through a freshly built
    # pydantic adapter, which dominates push time: keep the list to what curators filter
    # on (the judge's name is the same on every row and goes into the dataset's metadata)
    metadata = [
        {"name": "source", "title": "Source", "settings": {"type": "terms"}},
        {"name": "n_responses", "title": "Responses", "settings": {"type": "integer"}},
    ]
    for i in range(n):
        metadata.append({"name": f"judge_score_{i + 1}", "title": f"Judge score {i + 1}",
                         "settings": {"type": "float"}})
        metadata.append({"name": f"length_{i + 1}", "title": f"Length of response {i + 1}",
                         "settings": {"type": "integer"}})
    for m in metadata:
        m["visible_for_annotators"] = True
    return {"fields": fields, "questions": questions, "metadata": metadata}


def judge_ranks(row: dict) -> list[int] | None:
    """The judge's rank per response (1 = best): the row's ``ranks`` when given,
    else from ``scores`` (ties share a rank; unscored responses rank last)."""
    if row.get("ranks"):
        return [int(r) for r in row["ranks"]]
    scores = row.get("scores") or []
    if not any(s is not None for s in scores):
        return None
    ordered = sorted(((s if s is not None else -math.inf) for s in scores), reverse=True)
    return [ordered.index(s if s is not None else -math.inf) + 1 for s in scores]


_AGENT_BAD = re.compile(r"[^a-zA-Z0-9\-_:./\s]")


def agent_name(judge: Any) -> str:
    name = _AGENT_BAD.sub("-", str(judge or "judge")).strip()[:200]
    return name if re.search(r"[a-zA-Z0-9]", name) else "judge"


def _unit(score: float | None, lo: float, hi: float) -> float | None:
    if score is None:
        return None
    return 1.0 if hi == lo else max(0.0, min(1.0, (score - lo) / (hi - lo)))


def _rating_from(best: float, lo: float, hi: float) -> int | None:
    """Map the judge's best score onto 1–5 when its scale is recognisable."""
    if 1 <= lo and hi <= 5:
        return int(round(best))
    if 0 <= lo and hi <= 10:
        return max(1, min(5, int(round(1 + best / 10 * 4))))
    if 0 <= lo and hi <= 1:
        return max(1, min(5, int(round(1 + best * 4))))
    return None


def to_record(row: dict, question_ids: dict[str, str],
              scale: tuple[float, float] | None) -> dict:
    """One ranked row as a record for ``PUT /datasets/{id}/records/bulk``."""
    responses = row["responses"]
    fields: dict[str, Any] = {
        PROMPT: [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
        if is_chat(row["prompt"]) else row["prompt"]}
    fields.update({response_name(i): text for i, text in enumerate(responses)})
    scores = list(row.get("scores") or [None] * len(responses))
    present = sorted((s for s in scores if s is not None), reverse=True)
    metadata: dict[str, Any] = {"source": str(row.get("source") or "unknown"),
                                "n_responses": len(responses)}
    for i, text in enumerate(responses):
        metadata[f"length_{i + 1}"] = len(text)
        metadata[f"judge_score_{i + 1}"] = float(scores[i]) if scores[i] is not None else None
    record = {"external_id": str(row["id"]), "fields": fields,
              "metadata": {k: v for k, v in metadata.items() if v is not None}}
    suggestions = []
    ranks = judge_ranks(row)
    agent = agent_name(row.get("judge"))
    if ranks is not None:
        value = [{"value": response_name(i), "rank": r} for i, r in enumerate(ranks)]
        suggestion = {"question_id": question_ids[RANKING], "value": value, "agent": agent,
                      "type": "model"}
        if scale is not None and all(s is not None for s in scores):
            suggestion["score"] = [_unit(s, *scale) for s in scores]
        suggestions.append(suggestion)
    if scale is not None and present:
        rating = _rating_from(present[0], *scale)
        if rating is not None:
            suggestions.append({"question_id": question_ids[RATING], "value": rating,
                                "agent": agent, "type": "model",
                                "score": _unit(present[0], *scale)})
    if suggestions:
        record["suggestions"] = suggestions
    return record
