"""Judged win rate: a policy's answers against its base's, compared by an AI judge in both
orders (``alignment.judges.PairwiseJudge``).

A win counts only when both orders agree; a pair whose two orders disagree is a tie,
because the judge then followed the position rather than the content. ``win_rate`` =
(wins + 0.5 * ties) / judged, reported with the tie and position-inconsistency rates.
A 135M judge is weak and position-biased: read its figure as a smoke signal and look at
the samples kept side by side.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from alignment.errors import ConfigError, DataError


def distinct_prompts(pairs, n: int) -> list:
    """The first ``n`` distinct prompts of the pairs, in order (pairs often share one)."""
    seen, out = set(), []
    for row in pairs:
        key = json.dumps(row["prompt"])
        if key not in seen:
            seen.add(key)
            out.append(row["prompt"])
        if len(out) == n:
            break
    return out


def prompt_text(prompt) -> str:
    """What the judge reads as the instruction: the user turn, or the whole conversation."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def greedy_answers(model, tokenizer, prompts: list, max_new_tokens: int,
                   batch_size: int = 32, merge: bool = True) -> list:
    """Greedy answers (``alignment.engine.Generation``) of ``model``; with ``merge`` a LoRA
    adapter is folded into the weights while decoding (False inside ``disable_adapter``)."""
    import contextlib

    from alignment import engine

    with engine.adapter_merged(model) if merge else contextlib.nullcontext():
        gens = engine.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                               batch_size=batch_size)
    return [g[0] for g in gens]


def length_controlled(winners: list[str | None], trained: list[str], base: list[str]) -> dict:
    """The win rate read at zero length difference, as AlpacaEval's length control does.

    Judges favour longer answers, so a policy that only got longer wins more often. A
    logistic regression of the verdict (a win 1, a loss 0, a tie half of each) on the
    difference in words, trained minus base (in units of its standard deviation), read
    at a difference of zero, says how often the policy would win at equal length. None
    when fewer than two verdicts or no spread in the lengths or verdicts.
    """
    import numpy as np
    from scipy.optimize import minimize

    from alignment.verifiers import count_words

    judged = [(w, count_words(t) - count_words(b)) for w, t, b in zip(winners, trained, base)
              if w is not None]
    out = {"mean_words_trained": _mean([count_words(t) for t in trained]),
           "mean_words_base": _mean([count_words(b) for b in base]), "win_rate_lc": None}
    if len(judged) < 2:
        return out
    y = np.array([{"a": 1.0, "b": 0.0, "tie": 0.5}[w] for w, _ in judged])
    d = np.array([float(x) for _, x in judged])
    if d.std() == 0 or y.min() == y.max():
        return out
    x = d / d.std()

    def loss(theta):  # mean negative log-likelihood with soft labels, a little L2
        z = theta[0] + theta[1] * x
        return float(np.mean(np.logaddexp(0, z) - y * z) + 1e-3 * theta[1] ** 2)
    fit = minimize(loss, np.zeros(2), method="BFGS")
    out["win_rate_lc"] = float(1 / (1 + np.exp(-fit.x[0])))
    out["length_slope"] = float(fit.x[1])
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def judge_answers(prompts: list, trained: list[str], base: list[str], judge: str,
                  judge_batch_size: int = 8, samples: int = 5, max_new_tokens: int | None = None
                  ) -> dict:
    """The judge's verdicts on ``trained`` vs ``base`` answers to ``prompts``; the figures."""
    from alignment.judges import PairwiseJudge

    started = time.perf_counter()
    verdicts = PairwiseJudge(judge, batch_size=judge_batch_size).compare(
        [prompt_text(p) for p in prompts], trained, base)
    winners = [v["winner"] for v in verdicts]
    judged = sum(w is not None for w in winners)
    wins, losses, ties = winners.count("a"), winners.count("b"), winners.count("tie")
    inconsistent = sum(w is not None and not v["consistent"] for w, v in zip(winners, verdicts))

    def rate(x: float) -> float | None:
        return x / judged if judged else None
    return {
        "judge": judge, "prompts": len(prompts), "judged": judged, "max_new_tokens": max_new_tokens,
        "wins": wins, "losses": losses, "ties": ties, "no_verdict": len(prompts) - judged,
        "win_rate": rate(wins + 0.5 * ties), "tie_rate": rate(ties),
        # a constant position bias cancels in the order-averaged probability, so its mean
        # still carries a (weak) signal when every item is a tie
        "p_trained_mean": rate(sum(v["p_a"] for v in verdicts if v["p_a"] is not None)),
        "position_inconsistent_rate": rate(inconsistent),
        "identical_answers": sum(t == b for t, b in zip(trained, base)),
        **length_controlled(winners, trained, base),
        "judge_seconds": round(time.perf_counter() - started, 1),
        "samples": [{"prompt": prompt_text(p), "base": b, "trained": t, "winner": v["winner"],
                     "p_trained": v["p_a"], "consistent": v["consistent"]}
                    for p, b, t, v in list(zip(prompts, base, trained, verdicts))[:samples]],
    }


def judge_win_rate(policy, reference, tokenizer, prompts: list, judge: str,
                   max_new_tokens: int = 64, generate_batch_size: int = 32,
                   judge_batch_size: int = 8, samples: int = 5) -> dict:
    """Generate with the policy and the reference, let a PairwiseJudge pick; the figures.

    ``reference`` None means the policy is a PEFT model whose adapter is switched off for
    the reference's answers.
    """
    started = time.perf_counter()
    trained = [g.text.strip() for g in greedy_answers(policy, tokenizer, prompts,
                                                      max_new_tokens, generate_batch_size)]
    with as_reference(policy, reference):
        base = [g.text.strip() for g in greedy_answers(reference or policy, tokenizer, prompts,
                                                       max_new_tokens, generate_batch_size,
                                                       merge=reference is not None)]
    generated = time.perf_counter()
    figures = judge_answers(prompts, trained, base, judge, judge_batch_size, samples,
                            max_new_tokens)
    figures["generate_seconds"] = round(generated - started, 1)
    return figures


def as_reference(policy, reference):
    """The base's weights: the policy with its adapter off, or the separate reference."""
    import contextlib

    return policy.disable_adapter() if reference is None else contextlib.nullcontext()


def samples_markdown(result: dict) -> str:
    """The kept generations side by side, for a person to read."""
    j = result["judged"]
    names = {"a": "trained", "b": "base", "tie": "tie (orders disagree)", None: "no verdict"}
    lines = [f"# Side by side: {result['model']} vs its base", "",
             f"Judge `{j['judge']}`, greedy answers of at most {j['max_new_tokens']} tokens. "
             "A small judge is weak and position-biased; read the answers, not just the verdicts.",
             ""]
    for i, s in enumerate(result["samples"], 1):
        p = "-" if s["p_trained"] is None else f"{s['p_trained']:.2f}"
        lines += [f"## {i}. {s['prompt'][:80]}", "", f"**Prompt**\n\n{s['prompt']}", "",
                  f"**Base**\n\n{s['base'] or '(empty)'}", "",
                  f"**Trained**\n\n{s['trained'] or '(empty)'}", "",
                  f"**Verdict**: {names[s['winner']]} (P(trained better), order-averaged: {p})",
                  ""]
    return "\n".join(lines)


def format_judged(j: dict) -> list[str]:
    """The win-rate lines of `align eval`'s table."""
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"
    lines = [f"judged win rate vs reference ({j['judge']}, {j['judged']}/{j['prompts']} "
             f"prompts, {j['wins']}W {j['losses']}L {j['ties']}T)",
             f"{'  win rate (ties count half)':<38} {pct(j['win_rate']):>8}",
             f"{'  tie rate':<38} {pct(j['tie_rate']):>8}",
             f"{'  position-inconsistent rate':<38} {pct(j['position_inconsistent_rate']):>8}",
             f"{'  mean P(trained better), both orders':<38} {pct(j['p_trained_mean']):>8}"]
    if j.get("mean_words_trained") is not None:
        lines.append(f"{'  length-controlled win rate':<38} {pct(j.get('win_rate_lc')):>8}"
                     f"  (mean words: trained {j['mean_words_trained']:.1f}, "
                     f"base {j['mean_words_base']:.1f})")
    if j["identical_answers"]:
        lines.append(f"  ({j['identical_answers']} prompt(s) got the same answer from both)")
    return lines


# ---------------------------------------------------------------- picking a judge

_JUDGE_KIND = re.compile(r"^(?:rating|pairwise|aspect|ranking)-judge:")
_JUDGE_ROUTE = re.compile(r"\s*\((?:endpoint|reward model)[^)]*\)\s*$")


def judge_spec(name: str) -> str:
    """The model spec inside a judge's name as the pipelines write it
    (``rating-judge:smollm2`` -> ``smollm2``; ``m (endpoint, strict parse)`` -> ``m``)."""
    return _JUDGE_ROUTE.sub("", _JUDGE_KIND.sub("", name.strip())).strip()


def pick_judge(calibration: str | Path) -> dict:
    """The judge that agrees best with people, from ``align annotate calibrate``'s JSON:
    the first judge (they are ranked by mean Kendall's tau against the human consensus)
    with a defined tau whose model loads here, with its figures, and why each judge
    ranked above it was passed over."""
    from alignment.models import ModelNotAvailable, resolve_model

    path = Path(calibration)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "no such file; `align annotate calibrate` writes it "
                        "(calibration.json beside the pull report)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"not JSON ({e}); pass the calibration.json that "
                        "`align annotate calibrate` writes") from None
    judges = data.get("judges") if isinstance(data, dict) else None
    if not isinstance(judges, list) or not judges:
        raise DataError(path, "no judges: pass the calibration.json that `align annotate "
                        "calibrate` writes", field="judges")
    passed_over = []
    for i, fig in enumerate(judges, 1):
        if not isinstance(fig, dict) or not isinstance(fig.get("judge"), str):
            raise DataError(path, "each judge needs a `judge` name", row=i, field="judges")
        tau = (fig.get("kendall_tau") or {}).get("mean")
        if tau is None:
            passed_over.append({"judge": fig["judge"], "why": "tau undefined"})
            continue
        spec = judge_spec(fig["judge"])
        try:
            resolve_model(spec)
        except ModelNotAvailable as e:
            passed_over.append({"judge": fig["judge"], "why": str(e)})
            continue
        tau_fig = fig["kendall_tau"]
        return {"from": str(path), "judge": spec, "name": fig["judge"],
                "records_compared": fig.get("records_compared"), "kendall_tau": tau_fig,
                "top1_agreement": fig.get("top1_agreement"),
                "above_chance": bool(tau_fig.get("ci95")) and tau_fig["ci95"][0] > 0,
                "passed_over": passed_over}
    why = "; ".join(f"{p['judge']}: {p['why']}" for p in passed_over)
    raise ConfigError(f"--judge-from {path}: no judge in it loads here ({why}); pass "
                      "--judge, or --no-win-rate")


def format_choice(choice: dict) -> list[str]:
    """How `align eval` says which judge it picked and how far people agree with it."""
    def fig(f: dict | None) -> str:
        if not f or f.get("mean") is None:
            return "n/a"
        ci = "" if not f.get("ci95") else f" [{f['ci95'][0]:.2f}, {f['ci95'][1]:.2f}]"
        return f"{f['mean']:.2f}{ci}"
    lines = [f"judge {choice['judge']} picked from {choice['from']}: Kendall's tau with "
             f"people {fig(choice['kendall_tau'])}, top-1 agreement "
             f"{fig(choice['top1_agreement'])} over {choice['records_compared']} records"]
    for p in choice["passed_over"]:
        lines.append(f"  passed over {p['judge']} (agrees better): {p['why']}")
    if not choice["above_chance"]:
        lines.append("  its agreement with people is not above chance (the interval of tau "
                     "reaches 0): read its win rate with care")
    return lines
