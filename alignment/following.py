"""Instruction following, measured: how often a policy's greedy answers to held-out prompts
pass the checks the prompts carry, against its base's, with an interval.

Prompts come as rows with a ``prompt`` and a list of verifier specs in ``verifiers``
(``alignment.verifiers``; ``align generate constraints`` writes such rows). Each model
answers each prompt greedily; an answer *follows* the prompt when every one of its specs
passes. Reported, for the policy and the base: the follow rate over all prompts and per
verifier (a prompt counts for each verifier it carries), the mean partial-credit score,
how many answers the token limit cut off, and the difference policy - base with a paired
bootstrap 95% interval (prompts resampled, the two models' outcomes on a prompt kept
together; ``scipy.stats.bootstrap``, percentile method).

Factual questions (``question`` + accepted ``answers``; the shipped set is
``alignment/evalsets/factual_qa.jsonl``) check that training on formats did not cost
knowledge: an answer is right when it contains an accepted answer as a whole word or
phrase, case-insensitively.
"""

from __future__ import annotations

import re
from pathlib import Path

from alignment.errors import DataError

FACTUAL = Path(__file__).parent / "evalsets" / "factual_qa.jsonl"


def read_checked_prompts(path: str | Path) -> list[dict]:
    """Rows with a non-empty ``prompt`` text and verifier specs, every spec checked."""
    from alignment import verifiers
    from alignment.data import read_rows

    rows = []
    for i, row in enumerate(read_rows(path), start=1):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(path, "expected a non-empty prompt text", row=i, field="prompt")
        specs = row.get("verifiers")
        if not isinstance(specs, list) or not specs:
            raise DataError(path, "expected a list of verifier specs (`align generate "
                                  "constraints` writes them)", row=i, field="verifiers")
        checked = [verifiers.check_spec(s, f"verifiers[{j}]", path=path, row=i)
                   for j, s in enumerate(specs)]
        rows.append({**row, "verifiers": checked})
    if not rows:
        raise DataError(path, "no prompts")
    return rows


def read_factual(path: str | Path = FACTUAL) -> list[dict]:
    """Rows with a ``question`` and a non-empty list of accepted ``answers``."""
    from alignment.data import read_rows

    rows = []
    for i, row in enumerate(read_rows(path), start=1):
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise DataError(path, "expected a question text", row=i, field="question")
        answers = row.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers or not all(
                isinstance(a, str) and a.strip() for a in answers):
            raise DataError(path, "expected a list of accepted answer texts", row=i,
                            field="answers")
        rows.append({**row, "answers": answers})
    if not rows:
        raise DataError(path, "no questions")
    return rows


def answer_correct(text: str, answers: list[str]) -> bool:
    """True when ``text`` holds one of ``answers`` as a whole word/phrase (any case)."""
    return any(re.search(r"(?<!\w)" + re.escape(a.strip()) + r"(?!\w)", text, re.IGNORECASE)
               for a in answers)


def paired_difference(policy: list[float], base: list[float], seed: int = 0,
                      resamples: int = 2000) -> dict:
    """Mean of each side, their difference and its paired bootstrap 95% interval."""
    import numpy as np
    from scipy.stats import bootstrap

    a, b = np.asarray(policy, dtype=float), np.asarray(base, dtype=float)
    out = {"n": len(a), "policy": float(a.mean()), "base": float(b.mean()),
           "difference": float(a.mean() - b.mean()), "ci95": None}
    if len(a) < 2:
        return out
    if np.all(a - b == (a - b)[0]):  # every prompt moved the same way: no spread to resample
        out["ci95"] = [out["difference"], out["difference"]]
        return out
    res = bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
                    paired=True, vectorized=True, n_resamples=resamples, method="percentile",
                    confidence_level=0.95, rng=np.random.default_rng(seed))
    out["ci95"] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return out


def follow_figures(rows: list[dict], policy: list, base: list, seed: int = 0) -> dict:
    """Follow rates of the two models' answers (``Generation``s, in ``rows``' order)."""
    from alignment import verifiers

    scored = {"policy": [verifiers.score(r["verifiers"], g.text.strip()) for r, g in zip(rows, policy)],
              "base": [verifiers.score(r["verifiers"], g.text.strip()) for r, g in zip(rows, base)]}
    passed = {k: [float(s["passed"]) for s in v] for k, v in scored.items()}
    figures = {"prompts": len(rows),
               "follow_rate": paired_difference(passed["policy"], passed["base"], seed),
               "score": paired_difference([s["score"] for s in scored["policy"]],
                                          [s["score"] for s in scored["base"]], seed),
               "truncated": {"policy": sum(g.truncated for g in policy),
                             "base": sum(g.truncated for g in base)},
               "by_verifier": {}}
    names = sorted({s["name"] for r in rows for s in r["verifiers"]})
    for name in names:
        idx = [i for i, r in enumerate(rows) if any(s["name"] == name for s in r["verifiers"])]
        spec_of = {i: next(s for s in rows[i]["verifiers"] if s["name"] == name) for i in idx}
        sides = {k: [float(verifiers.run(spec_of[i], gens[i].text.strip()) >= 1.0) for i in idx]
                 for k, gens in (("policy", policy), ("base", base))}
        figures["by_verifier"][name] = paired_difference(sides["policy"], sides["base"], seed)
    return figures


def factual_figures(rows: list[dict], policy: list, base: list, seed: int = 0) -> dict:
    right = {k: [float(answer_correct(g.text, r["answers"])) for r, g in zip(rows, gens)]
             for k, gens in (("policy", policy), ("base", base))}
    return {"questions": len(rows), "accuracy": paired_difference(right["policy"], right["base"],
                                                                  seed)}


def answer_both(policy, reference, tokenizer, prompts: list, max_new_tokens: int,
                base_answers: list | None = None, batch_size: int = 32) -> tuple[list, list]:
    """Greedy answers of the policy and of the base (``reference`` None: the policy's
    adapter switched off). ``base_answers`` reuses the base's from an earlier run."""
    from alignment.winrate import as_reference, greedy_answers

    trained = greedy_answers(policy, tokenizer, prompts, max_new_tokens, batch_size)
    if not base_answers:
        with as_reference(policy, reference):
            base_answers = greedy_answers(reference or policy, tokenizer, prompts,
                                          max_new_tokens, batch_size, merge=reference is not None)
    return trained, base_answers


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def _interval(d: dict) -> str:
    ci = d["ci95"]
    diff = f"{100 * d['difference']:+5.1f}"
    return diff if ci is None else f"{diff}  [{100 * ci[0]:+5.1f}, {100 * ci[1]:+5.1f}]"


def format_following(fig: dict, factual: dict | None = None) -> list[str]:
    """The table `align eval` prints: base, trained, difference [95% interval], in points."""
    f = fig["follow_rate"]
    lines = [f"instruction following on {fig['prompts']} held-out prompts (greedy answers; "
             "difference in points, paired bootstrap 95% interval)",
             f"  {'':<24} {'base':>7} {'trained':>8}   difference",
             f"  {'follow rate (all checks)':<24} {_pct(f['base']):>7} {_pct(f['policy']):>8}   "
             f"{_interval(f)}"]
    for name, d in fig["by_verifier"].items():
        lines.append(f"  {name + ' (' + str(d['n']) + ')':<24} {_pct(d['base']):>7} "
                     f"{_pct(d['policy']):>8}   {_interval(d)}")
    s = fig["score"]
    lines.append(f"  {'mean partial credit':<24} {_pct(s['base']):>7} {_pct(s['policy']):>8}   "
                 f"{_interval(s)}")
    t = fig["truncated"]
    lines.append(f"  answers cut by the token limit: base {t['base']}, trained {t['policy']}")
    if factual:
        a = factual["accuracy"]
        lines.append(f"  {'factual (' + str(factual['questions']) + ' questions)':<24} "
                     f"{_pct(a['base']):>7} {_pct(a['policy']):>8}   {_interval(a)}")
    return lines
