"""Dataset formats: detect what a peer published, convert it into align's row schemas.

Detection looks only at column names. :data:`FORMATS` lists each format's required
columns; the first format whose columns are all present in the first row wins, so
more specific shapes come first (UltraFeedback-binarized carries TRL's preference
columns plus scores; HH-RLHF is a preference pair without a prompt column).

Every source format belongs to one family (:data:`FAMILY`), whose rows are first
normalised into one of align's schemas (docs/schemas.md):

- ``sft``        ``{"messages": [...]}``
- ``preference`` TRL ``{"prompt", "chosen", "rejected"}`` (conversational when the
  source is a conversation)
- ``kto``        ``{"prompt", "completion", "label"}``
- ``ranked``     ``{"id", "prompt", "responses", "models", "scores", "judge", "judge_raw"}``

and then, when the target differs, carried across: ranked -> preference (pairs, see
:mod:`alignment.data.pairs`), ranked -> sft (best response), preference -> kto
(chosen True, rejected False), preference -> sft (prompt + chosen), preference ->
ranked (a ranking of two), kto -> sft (desirable completions).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from alignment.errors import DataError
from alignment.rubrics import HELPSTEER_ATTRIBUTES, HELPSTEER_WEIGHTS, ULTRAFEEDBACK_ASPECTS

# format -> required columns, checked in this order (first match wins).
FORMATS: dict[str, tuple[str, ...]] = {
    "align-ranked": ("prompt", "responses", "scores"),
    "ultrafeedback": ("instruction", "completions"),
    "align-preference": ("id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected"),
    "ultrafeedback-binarized": ("prompt", "chosen", "rejected", "score_chosen", "score_rejected"),
    "nectar": ("prompt", "answers"),
    "helpsteer": ("prompt", "response", "helpfulness"),
    "trl-kto": ("prompt", "completion", "label"),
    "trl-preference": ("prompt", "chosen", "rejected"),
    "hh-rlhf": ("chosen", "rejected"),
    "trl-prompt-completion": ("prompt", "completion"),
    "openai": ("messages",),
    "sharegpt": ("conversations",),
    "openorca": ("system_prompt", "question", "response"),
    "dolly": ("instruction", "context", "response"),
    "alpaca": ("instruction", "output"),
}

# format -> the align schema its rows are normalised into first.
FAMILY: dict[str, str] = {
    "align-ranked": "ranked", "ultrafeedback": "ranked", "nectar": "ranked",
    "helpsteer": "ranked",
    "align-preference": "preference", "ultrafeedback-binarized": "preference",
    "trl-preference": "preference", "hh-rlhf": "preference",
    "trl-kto": "kto",
    "trl-prompt-completion": "sft", "openai": "sft", "sharegpt": "sft", "openorca": "sft",
    "dolly": "sft", "alpaca": "sft",
}

TARGETS = ("sft", "preference", "kto", "ranked")

# Role names seen in published conversations -> the OpenAI/TRL role.
ROLES = {
    "system": "system", "user": "user", "human": "user", "assistant": "assistant",
    "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant", "bing": "assistant",
    "model": "assistant", "tool": "tool", "function": "tool", "observation": "tool",
    "function_response": "tool",
}

def prompt_id(prompt: str | list) -> str:
    """Stable id of a prompt: sha1 of its text (a conversation: its JSON), first 16 hex."""
    text = prompt if isinstance(prompt, str) else json.dumps(
        prompt, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def stable_hash(text: str) -> int:
    """A stable integer of a text (Python's ``hash`` is salted per process): the first 64
    bits of its sha1, the same bits :func:`prompt_id` writes in hex. Seeded choices that
    must not depend on row order or process draw with it."""
    return int(prompt_id(text), 16)


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error quotes the value, not megabytes."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def names(keys) -> str:
    """``['a', 'b']`` for a message: the first 20 names, each cut to 40 characters (a CSV
    header or a stray JSON object can hold anything); ``none`` when there are none."""
    keys = sorted(map(str, keys))
    if not keys:
        return "none"
    out = [repr(k) if len(k) <= 40 else repr(k[:40] + "...") for k in keys[:20]]
    more = [f"... ({len(keys)} in all)"] if len(keys) > 20 else []
    return f"[{', '.join(out + more)}]"


def formats_table() -> str:
    width = max(map(len, FORMATS))
    return "\n".join(f"  {name:<{width}}  {', '.join(cols)}  -> {FAMILY[name]}"
                     for name, cols in FORMATS.items())


def detect_format(rows: list[dict], path: object = None) -> str:
    """Name of the first format in :data:`FORMATS` whose required columns row 1 has."""
    where = path if path is not None else "<rows>"
    if not rows:
        raise DataError(where, "the dataset has no rows")
    columns = set(rows[0])
    for name, required in FORMATS.items():
        if columns.issuperset(required):
            return name
    raise DataError(where, f"unknown dataset shape: columns {names(columns)} match no known "
                           f"format. Rename columns to one of these (format: required "
                           f"columns -> schema):\n{formats_table()}", row=1)


# --------------------------------------------------------------------------- field helpers

class _Row:
    """One source row and where it came from, so every error can name file, row and field."""

    def __init__(self, row: dict, path: object, number: int):
        self.row, self.path, self.index = row, path, number

    def error(self, field: str | None, message: str) -> DataError:
        return DataError(self.path, message, row=self.index, field=field)

    def get(self, field: str, default: Any = None) -> Any:
        return self.row.get(field, default)

    def require(self, field: str) -> Any:
        if field not in self.row or self.row[field] is None:
            raise self.error(field, "is missing; every row of this format needs it")
        return self.row[field]

    def text(self, field: str, allow_empty: bool = False) -> str:
        value = self.require(field)
        if not isinstance(value, str):
            raise self.error(field, f"expected text, got {type(value).__name__}")
        if not allow_empty and not value.strip():
            raise self.error(field, "is empty; remove the row or fill the field")
        return value

    def optional_text(self, field: str) -> str:
        value = self.row.get(field)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(field, f"expected text, got {type(value).__name__}")
        return value

    def number(self, value: Any, field: str) -> float | None:
        """A score: numbers and numeric text pass; null, "", "N/A" and NaN mean no verdict."""
        if value is None or (isinstance(value, str) and value.strip().upper() in ("", "N/A", "NA")):
            return None
        if isinstance(value, bool):
            raise self.error(field, f"expected a number, got a boolean ({value})")
        number = None
        if isinstance(value, (int, float)):
            number = float(value) if abs(value) < 1e308 else math.inf  # float(10**400) raises
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise self.error(field, f"expected a number or null, got {shown(value)}")
        if math.isnan(number):
            return None
        if math.isinf(number):  # 1e999, or digits past float's range: no usable score
            raise self.error(field, f"expected a finite number, got {shown(value)}")
        return number

    def messages(self, field: str, value: Any = None) -> list[dict]:
        """A conversation in OpenAI or ShareGPT shape -> ``[{"role", "content"}]``."""
        value = self.require(field) if value is None else value
        if not isinstance(value, list) or not value:
            raise self.error(field, "expected a non-empty list of messages "
                                    "({'role': ..., 'content': ...})")
        out = []
        for i, msg in enumerate(value):
            if not isinstance(msg, dict):
                raise self.error(f"{field}[{i}]", f"expected a message object, got "
                                                  f"{type(msg).__name__}")
            role_key, content_key = ("from", "value") if "from" in msg else ("role", "content")
            raw_role = msg.get(role_key)
            role = ROLES.get(str(raw_role).lower()) if raw_role is not None else None
            if role is None:
                raise self.error(f"{field}[{i}].{role_key}",
                                 f"unknown role {shown(raw_role)}; use one of {sorted(ROLES)}")
            out.append({"role": role, "content": self._content(msg.get(content_key),
                                                                f"{field}[{i}].{content_key}")})
        return out

    def _content(self, content: Any, field: str) -> str:
        if isinstance(content, str):
            return content
        # OpenAI content parts: keep the text parts, refuse what a text model cannot use.
        if isinstance(content, list) and all(isinstance(p, dict) for p in content):
            kinds = {p.get("type") for p in content}
            if kinds <= {"text"}:
                return "".join(str(p.get("text", "")) for p in content)
            raise self.error(field, f"holds non-text content parts {names(kinds)}; "
                                    "only text is supported")
        raise self.error(field, f"expected message text, got {type(content).__name__}")


_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def parse_transcript(row: _Row, field: str, text: str | None = None) -> list[dict]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello"`` -> messages (HH-RLHF and Nectar)."""
    text = row.text(field) if text is None else text
    if text.startswith(("Human:", "Assistant:")):
        text = "\n\n" + text
    parts = _TURN.split(text)
    if parts[0].strip():
        raise row.error(field, "text before the first `\\n\\nHuman:` turn; expected a "
                               "transcript of `\\n\\nHuman: ...` / `\\n\\nAssistant: ...` turns")
    if len(parts) < 3:
        raise row.error(field, "no `\\n\\nHuman:` / `\\n\\nAssistant:` turns found")
    msgs = [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2])]
    # Nectar prompts end with an empty "Assistant:" cue for the answer to follow.
    if msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
        msgs.pop()
    return msgs


def _split_shared(row: _Row, chosen: list[dict], rejected: list[dict]) -> tuple[list, list, list]:
    """Two full conversations -> (shared prompt ending with a user turn, chosen, rejected)."""
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    if k == len(chosen) == len(rejected):
        k -= 1  # identical conversations: compare the final turns (dropped later)
    while k > 0 and chosen[k - 1]["role"] != "user":
        k -= 1
    if k == 0:
        raise row.error("chosen", "`chosen` and `rejected` share no user turn to use as "
                                  "the prompt; both must continue the same conversation")
    c, r = chosen[k:], rejected[k:]
    for name, part in (("chosen", c), ("rejected", r)):
        if not part or part[0]["role"] != "assistant":
            raise row.error(name, "after the shared prompt the conversation must continue "
                                  "with an assistant turn")
    return chosen[:k], c, r


def _bump(stats: dict | None, key: str, n: int = 1) -> None:
    if stats is not None:
        stats[key] = stats.get(key, 0) + n


def _keep(row: _Row, out: dict, *fields: str) -> dict:
    for f in fields:
        if row.get(f) is not None:
            out[f] = row.get(f)
    return out


# --------------------------------------------------------------------------- -> sft

def _user_assistant(user: str, assistant: str, system: str = "") -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system.strip() else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _sft_alpaca(r: _Row) -> dict:
    extra = r.optional_text("input")
    user = r.text("instruction") + (f"\n\n{extra}" if extra.strip() else "")
    return _keep(r, {"messages": _user_assistant(user, r.text("output"))}, "id", "source")


def _sft_dolly(r: _Row) -> dict:
    context = r.optional_text("context")
    user = r.text("instruction") + (f"\n\n{context}" if context.strip() else "")
    return _keep(r, {"messages": _user_assistant(user, r.text("response"))}, "id", "category")


def _sft_openorca(r: _Row) -> dict:
    msgs = _user_assistant(r.text("question"), r.text("response"), r.optional_text("system_prompt"))
    return _keep(r, {"messages": msgs}, "id")


def _sft_openai(r: _Row) -> dict:
    return _keep(r, {"messages": r.messages("messages")}, "id", "source")


def _sft_sharegpt(r: _Row) -> dict:
    return _keep(r, {"messages": r.messages("conversations")}, "id", "source")


def _sft_prompt_completion(r: _Row) -> dict:
    prompt, completion = r.require("prompt"), r.require("completion")
    p = r.messages("prompt") if isinstance(prompt, list) else [
        {"role": "user", "content": r.text("prompt")}]
    c = r.messages("completion") if isinstance(completion, list) else [
        {"role": "assistant", "content": r.text("completion")}]
    return _keep(r, {"messages": p + c}, "id")


# --------------------------------------------------------------------------- -> preference

def _preference_trl(r: _Row) -> dict:
    """TRL pairs, standard or conversational, with or without the prompt inside chosen."""
    prompt, chosen, rejected = r.require("prompt"), r.require("chosen"), r.require("rejected")
    if isinstance(chosen, str) and isinstance(rejected, str) and isinstance(prompt, str):
        out = {"prompt": r.text("prompt"), "chosen": r.text("chosen"),
               "rejected": r.text("rejected")}
    else:
        p = r.messages("prompt") if isinstance(prompt, list) else None
        c = r.messages("chosen") if isinstance(chosen, list) else [
            {"role": "assistant", "content": r.text("chosen")}]
        rj = r.messages("rejected") if isinstance(rejected, list) else [
            {"role": "assistant", "content": r.text("rejected")}]
        if p is not None and c[:len(p)] == p and rj[:len(p)] == p and len(c) > len(p):
            c, rj = c[len(p):], rj[len(p):]
        elif c[0]["role"] != "assistant":
            # chosen/rejected hold the whole conversation (UltraFeedback-binarized, TRL's
            # implicit prompt): the shared turns are the prompt.
            p, c, rj = _split_shared(r, c, rj)
        elif p is None:
            p = [{"role": "user", "content": r.text("prompt")}]
        out = {"prompt": p, "chosen": c, "rejected": rj}
    if r.get("id") is None and r.get("prompt_id") is not None:
        out["id"] = r.get("prompt_id")
    _keep(r, out, "id")
    for f in ("score_chosen", "score_rejected"):
        if f in r.row:
            out[f] = r.number(r.get(f), f)
    return out


def _preference_hh(r: _Row) -> dict:
    chosen, rejected = r.require("chosen"), r.require("rejected")
    c = parse_transcript(r, "chosen") if isinstance(chosen, str) else r.messages("chosen")
    rj = parse_transcript(r, "rejected") if isinstance(rejected, str) else r.messages("rejected")
    p, c, rj = _split_shared(r, c, rj)
    return _keep(r, {"prompt": p, "chosen": c, "rejected": rj}, "id")


# --------------------------------------------------------------------------- -> kto

def _kto_trl(r: _Row) -> dict:
    label = r.require("label")
    if isinstance(label, str) and label.strip().lower() in ("true", "false", "1", "0"):
        label = label.strip().lower() in ("true", "1")
    elif isinstance(label, int) and not isinstance(label, bool) and label in (0, 1):
        label = bool(label)
    if not isinstance(label, bool):
        raise r.error("label", f"expected true/false (desirable or not), got {shown(label)}")
    prompt, completion = r.require("prompt"), r.require("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        out = {"prompt": r.text("prompt"), "completion": r.text("completion")}
    else:
        p = r.messages("prompt") if isinstance(prompt, list) else [
            {"role": "user", "content": r.text("prompt")}]
        c = r.messages("completion") if isinstance(completion, list) else [
            {"role": "assistant", "content": r.text("completion")}]
        out = {"prompt": p, "completion": c}
    out["label"] = label
    return _keep(r, out, "id")


# --------------------------------------------------------------------------- -> ranked

def _ranked_align(r: _Row) -> dict:
    prompt = r.require("prompt")
    prompt = r.messages("prompt") if isinstance(prompt, list) else r.text("prompt")
    responses = r.require("responses")
    if not isinstance(responses, list):
        raise r.error("responses", f"expected a list of response texts, got "
                                   f"{type(responses).__name__}")
    n = len(responses)
    scores = r.require("scores")
    if not isinstance(scores, list):
        raise r.error("scores", f"expected a list of numbers, got {type(scores).__name__}")
    out = {
        "id": r.get("id") or prompt_id(prompt),
        "prompt": prompt,
        "responses": responses,
        "models": r.get("models") if r.get("models") is not None else ["unknown"] * n,
        "scores": [r.number(s, f"scores[{i}]") for i, s in enumerate(scores)],
        "judge": r.get("judge") if r.get("judge") is not None else "unknown",
        "judge_raw": r.get("judge_raw") if r.get("judge_raw") is not None else [""] * n,
    }
    # how each response ended travels with it, so pairing can leave truncated ones out
    for f in ("ratings", "rationales", "ranks", "source", "finish_reasons", "truncated"):
        if r.get(f) is not None:
            out[f] = r.get(f)
    return out


def _ultrafeedback_rating(r: _Row, value: Any, field: str) -> float | None:
    # The published rows hold one {"Rating": "4", ...} per aspect; some exports wrap it
    # in a one-element list.
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if not isinstance(value, dict):
        return None
    return r.number(value.get("Rating"), f"{field}.Rating")


def _ranked_ultrafeedback(r: _Row) -> dict:
    prompt = r.text("instruction")
    completions = r.require("completions")
    if not isinstance(completions, list):
        raise r.error("completions", "expected a list of completion objects")
    responses, models, scores, ratings, rationales, raw = [], [], [], [], [], []
    for i, comp in enumerate(completions):
        field = f"completions[{i}]"
        if not isinstance(comp, dict):
            raise r.error(field, "expected a completion object with `model`, `response`, "
                                 "`annotations`")
        if not isinstance(comp.get("response"), str):
            raise r.error(f"{field}.response", "is missing or not text")
        annotations = comp.get("annotations") or {}
        # the aspects in the order the source lists them (the published data: instruction
        # following, honesty, truthfulness, helpfulness)
        aspect = {a: _ultrafeedback_rating(r, annotations.get(a), f"{field}.annotations.{a}")
                  for a in annotations if a in ULTRAFEEDBACK_ASPECTS}
        known = [v for v in aspect.values() if v is not None]
        score = r.number(comp.get("overall_score"), f"{field}.overall_score")
        if score is None:
            score = sum(known) / len(known) if known else None
        responses.append(comp["response"])
        models.append(str(comp.get("model") or "unknown"))
        scores.append(score)
        ratings.append(aspect)
        rationales.append(comp.get("critique") or "\n".join(
            f"{a}: {_rationale(annotations.get(a))}" for a in aspect))
        raw.append(json.dumps({"annotations": annotations, "critique": comp.get("critique"),
                               "overall_score": comp.get("overall_score"),
                               "fine-grained_score": comp.get("fine-grained_score")},
                              ensure_ascii=False, default=str))
    return _keep(r, {"id": prompt_id(prompt), "prompt": prompt, "responses": responses,
                     "models": models, "scores": scores, "judge": "ultrafeedback (gpt-4)",
                     "judge_raw": raw, "ratings": ratings, "rationales": rationales},
                 "source")


def _rationale(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return str(value.get("Rationale", "")) if isinstance(value, dict) else ""


def _ranked_nectar(r: _Row) -> dict:
    prompt = parse_transcript(r, "prompt")
    answers = r.require("answers")
    if not isinstance(answers, list):
        raise r.error("answers", "expected a list of {answer, model, rank} objects")
    ranks: list[int | None] = []
    responses, models = [], []
    for i, a in enumerate(answers):
        if not isinstance(a, dict) or not isinstance(a.get("answer"), str):
            raise r.error(f"answers[{i}].answer", "is missing or not text")
        rank = r.number(a.get("rank"), f"answers[{i}].rank")
        responses.append(a["answer"])
        models.append(str(a.get("model") or "unknown"))
        ranks.append(None if rank is None else int(rank))
    n = len(answers)
    # Rank 1 is best; scores must grow with quality, so score = n + 1 - rank.
    scores = [None if k is None else float(n + 1 - k) for k in ranks]
    return _keep(r, {"id": prompt_id(prompt), "prompt": prompt, "responses": responses,
                     "models": models, "scores": scores, "judge": "nectar (gpt-4 ranking)",
                     "judge_raw": [json.dumps({"rank": k}) for k in ranks], "ranks": ranks},
                 "source")


def _ranked_helpsteer(rows: list[dict], path: object, stats: dict | None,
                      weights: dict[str, float] | None) -> list[dict]:
    """HelpSteer rows (one response each) grouped by prompt into rankings; score =
    sum(weight * attribute), by default helpfulness alone (``HELPSTEER_WEIGHTS``); pass
    other weights to ``convert(..., helpsteer_weights=...)``."""
    weights = weights or HELPSTEER_WEIGHTS
    groups: dict[str, list[tuple[_Row, dict]]] = {}
    for i, row in enumerate(rows, start=1):
        r = _Row(row, path, i)
        prompt = r.text("prompt")
        r.text("response")
        attrs = {a: r.number(row.get(a), a) for a in HELPSTEER_ATTRIBUTES if a in row}
        for a in weights:
            if a not in row:
                raise r.error(a, f"is missing but weighted in the score ({weights})")
        groups.setdefault(prompt, []).append((r, attrs))
    out = []
    for prompt, members in groups.items():
        if len(members) < 2:
            _bump(stats, "single_response_prompts")
            continue
        scores = []
        for _, attrs in members:
            parts = [attrs[a] for a in weights]
            scores.append(None if any(p is None for p in parts)
                          else sum(w * p for w, p in zip(weights.values(), parts)))
        out.append({"id": prompt_id(prompt), "prompt": prompt,
                    "responses": [r.get("response") for r, _ in members],
                    "models": ["unknown"] * len(members), "scores": scores,
                    "judge": "helpsteer (human attributes)",
                    "judge_raw": [json.dumps(a) for _, a in members],
                    "ratings": [a for _, a in members]})
    if stats is not None and out:
        stats["score"] = " + ".join(f"{w:g}*{a}" for a, w in weights.items())
    return out


# --------------------------------------------------------------------------- schema checks

def _nonempty(r: _Row, field: str, value: Any) -> None:
    if isinstance(value, str):
        if not value.strip():
            raise r.error(field, "is empty")
        return
    if not isinstance(value, list) or not value:
        raise r.error(field, "expected text or a non-empty list of messages")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool") \
                or not isinstance(m.get("content"), str):
            raise r.error(f"{field}[{i}]", "expected {'role': system|user|assistant|tool, "
                                           "'content': str}")


def check_row(kind: str, r: _Row) -> None:
    """Raise :class:`DataError` unless ``r`` is a valid row of align schema ``kind``."""
    row = r.row
    if kind == "sft":
        msgs = row.get("messages")
        _nonempty(r, "messages", msgs if isinstance(msgs, list) else None)
        if not any(m["role"] == "assistant" and m["content"].strip() for m in msgs):
            raise r.error("messages", "has no non-empty assistant turn to learn from")
    elif kind in ("preference", "kto"):
        answers = ("chosen", "rejected") if kind == "preference" else ("completion",)
        for f in ("prompt",) + answers:
            if f not in row:
                raise r.error(f, "is missing")
            _nonempty(r, f, row[f])
        conversational = isinstance(row["prompt"], list)
        for f in answers:
            if isinstance(row[f], list) != conversational:
                raise r.error(f, "mixes text and conversation: `prompt` and the answers must "
                                 "both be text or both be message lists")
            if conversational and row["prompt"][-1]["role"] != "user":
                raise r.error("prompt", "a conversational prompt must end with a user turn")
        if kind == "kto" and not isinstance(row.get("label"), bool):
            raise r.error("label", "expected a boolean")
    elif kind == "ranked":
        _nonempty(r, "prompt", row.get("prompt"))
        responses = row.get("responses")
        if not isinstance(responses, list) or len(responses) < 2:
            raise r.error("responses", "a ranking needs a list of at least 2 responses")
        for i, t in enumerate(responses):
            if not isinstance(t, str):
                raise r.error(f"responses[{i}]", f"expected text, got {type(t).__name__}")
        for f in ("scores", "models", "judge_raw"):
            v = row.get(f)
            if not isinstance(v, list) or len(v) != len(responses):
                raise r.error(f, f"expected a list with one entry per response "
                                 f"({len(responses)})")
        for i, s in enumerate(row["scores"]):
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float))):
                raise r.error(f"scores[{i}]", f"expected a number or null, got {shown(s)}")
        if not isinstance(row.get("id"), str) or not isinstance(row.get("judge"), str):
            raise r.error("id" if not isinstance(row.get("id"), str) else "judge",
                          "expected text")
    else:
        raise ValueError(f"unknown schema {kind!r}; expected one of {TARGETS}")


def validate_rows(rows: list[dict], kind: str, path: object = None) -> list[dict]:
    """Check every row against align schema ``kind``; returns the rows unchanged."""
    where = path if path is not None else "<rows>"
    for i, row in enumerate(rows, start=1):
        check_row(kind, _Row(row, where, i))
    return rows


# --------------------------------------------------------------------------- conversion

_ROW_CONVERTERS: dict[str, Callable[[_Row], dict]] = {
    "alpaca": _sft_alpaca, "dolly": _sft_dolly, "openorca": _sft_openorca,
    "openai": _sft_openai, "sharegpt": _sft_sharegpt,
    "trl-prompt-completion": _sft_prompt_completion,
    "align-preference": _preference_trl, "ultrafeedback-binarized": _preference_trl,
    "trl-preference": _preference_trl, "hh-rlhf": _preference_hh,
    "trl-kto": _kto_trl,
    "align-ranked": _ranked_align, "ultrafeedback": _ranked_ultrafeedback,
    "nectar": _ranked_nectar,
}


def normalise(rows: list[dict], fmt: str, path: object = None, stats: dict | None = None,
              helpsteer_weights: dict[str, float] | None = None) -> list[dict]:
    """Source rows of format ``fmt`` -> rows of its family's align schema, checked."""
    where = path if path is not None else "<rows>"
    if fmt not in FAMILY:
        raise DataError(where, f"unknown format {fmt!r}; known formats:\n{formats_table()}")
    family = FAMILY[fmt]
    if fmt == "helpsteer":
        out = _ranked_helpsteer(rows, where, stats, helpsteer_weights)
        for i, row in enumerate(out, start=1):
            check_row("ranked", _Row(row, f"{where} (prompt group)", i))
        return out
    convert_row = _ROW_CONVERTERS[fmt]
    out = []
    for i, row in enumerate(rows, start=1):
        r = _Row(row, where, i)
        if not isinstance(row, dict):
            raise r.error(None, "expected an object of columns")
        new = convert_row(r)
        if family == "preference" and new["chosen"] == new["rejected"]:
            # Published sets hold a few identical pairs; they carry no preference.
            _bump(stats, "identical_pairs_dropped")
            continue
        if fmt in ("ultrafeedback", "nectar") and len(new["responses"]) < 2:
            # A few published prompts have fewer than two completions: nothing to rank.
            _bump(stats, "rows_under_2_responses_dropped")
            continue
        check_row(family, _Row(new, where, i))
        out.append(new)
    return out


def _as_messages(prompt: str | list, answer: str | list) -> list[dict]:
    p = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    a = answer if isinstance(answer, list) else [{"role": "assistant", "content": answer}]
    return p + a


def _answer_text(answer: str | list, r: _Row, field: str) -> str:
    if isinstance(answer, str):
        return answer
    if len(answer) != 1:
        raise r.error(field, "a ranking holds one response text per answer; this answer has "
                             f"{len(answer)} turns")
    return answer[0]["content"]


def convert(rows: list[dict], to: str, path: object = None, fmt: str | None = None, *,
            strategy: str = "best-worst", margin: float = 0.0, seed: int = 0,
            stats: dict | None = None,
            helpsteer_weights: dict[str, float] | None = None) -> list[dict]:
    """Convert rows of any known format (detected unless ``fmt``) into schema ``to``.

    ``strategy``/``margin``/``seed`` apply when rankings become pairs. Counts of what
    was dropped or skipped are added to ``stats`` when a dict is passed.
    """
    from alignment.data.pairs import ranked_to_pairs

    where = path if path is not None else "<rows>"
    if to not in TARGETS:
        raise DataError(where, f"unknown target {to!r}; use one of {', '.join(TARGETS)}")
    fmt = fmt or detect_format(rows, path)
    family = FAMILY.get(fmt)
    rows = normalise(rows, fmt, path, stats, helpsteer_weights)
    if stats is not None:
        stats.setdefault("source_format", fmt)
    if family == to:
        return rows
    if family == "ranked" and to in ("preference", "kto"):
        pairs, counts = ranked_to_pairs(rows, strategy=strategy, margin=margin, seed=seed)
        for k, v in counts.items():
            _bump(stats, f"pairs_{k}", v)
        return pairs if to == "preference" else _pairs_to_kto(pairs)
    if family == "ranked" and to == "sft":
        out = []
        for row in rows:
            scored = [(s, i) for i, s in enumerate(row["scores"]) if s is not None]
            if not scored:
                _bump(stats, "rows_without_scores")
                continue
            best = max(scored, key=lambda t: (t[0], -t[1]))[1]
            out.append({"id": row["id"], "messages": _as_messages(row["prompt"],
                                                                  row["responses"][best])})
        return out
    if family == "preference" and to == "kto":
        return _pairs_to_kto(rows)
    if family == "preference" and to == "sft":
        return [_keep(_Row(p, where, i), {"messages": _as_messages(p["prompt"], p["chosen"])},
                      "id") for i, p in enumerate(rows, start=1)]
    if family == "preference" and to == "ranked":
        out = []
        for i, p in enumerate(rows, start=1):
            r = _Row(p, where, i)
            scores = [p.get("score_chosen"), p.get("score_rejected")]
            if None in scores:
                scores = [1.0, 0.0]
            out.append({"id": p.get("id") or prompt_id(p["prompt"]), "prompt": p["prompt"],
                        "responses": [_answer_text(p["chosen"], r, "chosen"),
                                      _answer_text(p["rejected"], r, "rejected")],
                        "models": ["unknown", "unknown"], "scores": scores,
                        "judge": "pairwise preference", "judge_raw": ["chosen", "rejected"]})
        return out
    if family == "kto" and to == "sft":
        kept = [k for k in rows if k["label"]]
        _bump(stats, "undesirable_dropped", len(rows) - len(kept))
        return [_keep(_Row(k, where, i), {"messages": _as_messages(k["prompt"], k["completion"])},
                      "id") for i, k in enumerate(kept, start=1)]
    why = {
        "sft": "SFT rows hold one response per prompt and no preference between responses",
        "kto": "KTO rows are unpaired: nothing says which two completions compete",
    }[family]
    raise DataError(where, f"cannot convert `{fmt}` ({family}) rows to `{to}`: {why}. Score "
                           "several responses per prompt first (align generate ... with a "
                           "judge) to get a ranked dataset")


def _pairs_to_kto(pairs: list[dict]) -> list[dict]:
    out = []
    for p in pairs:
        for answer, label in ((p["chosen"], True), (p["rejected"], False)):
            row = {"prompt": p["prompt"], "completion": answer, "label": label}
            if p.get("id") is not None:
                row["id"] = p["id"]
            out.append(row)
    return out
