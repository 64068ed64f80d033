"""Preference evaluation of a trained policy against its reference on held-out pairs.

    align eval --model RUN_DIR_OR_MODEL [--base BASE] --dataset HELD_OUT_PAIRS [--output FILE]
              [--dtype auto|float32|bfloat16]

For each pair the implicit DPO reward of a completion y is
``r(y) = beta * (log pi(y|x) - log pi_ref(y|x))``, summed over the completion's tokens.
Reported: the fraction of pairs with r(chosen) > r(rejected) (preference accuracy), the
mean margin r(chosen) - r(rejected), and, for both the policy and the reference alone,
the fraction with log pi(chosen) > log pi(rejected) — what each model "prefers" before
any reference correction, so a reader sees where the base model already stood.

A run folder holding a LoRA adapter (``adapter_config.json``) is loaded once: the policy
is the base with the adapter, the reference the same weights with the adapter off. A
full model needs ``--base`` and loads both.

Scoring runs in the run's own precision (``--dtype auto``), read from its ``metrics.json``:
a ``bf16=True`` run is scored under bf16 autocast over its float32 weights, as TRL's
Trainer evaluated it, so the rewards match the ones it logged.

Judged win rate (on by default; ``--no_win_rate`` skips it): for the first
``--win_rate_prompts`` distinct held-out prompts, the policy and the reference each write a
greedy answer (``--max_new_tokens``; for an adapter, the same weights with the adapter on
and off), and ``alignment.judges.PairwiseJudge`` (``--judge``, default the bundled
SmolLM2-135M) compares them in both orders. ``win_rate`` = (wins + 0.5 * ties) / judged,
where a tie is a pair whose two orders disagree (position bias) or an exact 0.5; the tie
and position-inconsistency rates are reported beside it. The first ``--samples`` answers
are kept side by side (prompt, base, trained, verdict) in the JSON and in
``<output>.samples.md``. A 135M judge is weak and position-biased: read its win rate as
a smoke signal and look at the samples; pass a stronger ``--judge`` for a real figure.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import ConfigError


def tokenize_pair(row: dict, tokenizer) -> dict[str, list[int]]:
    """Prompt and completion ids, split the way TRL's DPOTrainer splits them."""
    if isinstance(row["prompt"], list):
        def ids(messages, **kw):
            return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                 **kw)["input_ids"]
        prompt = ids(row["prompt"], add_generation_prompt=True)
        chosen = ids(row["prompt"] + row["chosen"])
        rejected = ids(row["prompt"] + row["rejected"])
    else:
        eos = tokenizer.eos_token or ""
        def with_eos(text):
            return text if text.endswith(eos) else text + eos
        prompt = tokenizer(row["prompt"])["input_ids"]
        chosen = tokenizer(row["prompt"] + with_eos(row["chosen"]))["input_ids"]
        rejected = tokenizer(row["prompt"] + with_eos(row["rejected"]))["input_ids"]
    # the completion starts where the prompt alone and prompt+completion first differ
    n = min(_common_prefix(prompt, chosen), _common_prefix(prompt, rejected))
    return {"prompt": prompt[:n], "chosen": chosen[n:], "rejected": rejected[n:]}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def completion_logps(model, pairs: list[dict], pad_id: int, max_length: int | None,
                     batch_size: int) -> tuple[list[float], list[float]]:
    """Summed log-probabilities of the chosen and rejected completions, batch by batch."""
    import torch

    sequences = []  # (ids, completion start) for each chosen, then each rejected
    for key in ("chosen", "rejected"):
        for p in pairs:
            ids = (p["prompt"] + p[key])[:max_length] if max_length else p["prompt"] + p[key]
            sequences.append((ids, len(p["prompt"])))
    device = next(model.parameters()).device
    totals: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start:start + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            scored = torch.zeros((len(batch), width), dtype=torch.bool)
            for i, (ids, begin) in enumerate(batch):
                input_ids[i, :len(ids)] = torch.tensor(ids)
                attention[i, :len(ids)] = 1
                scored[i, begin:len(ids)] = True
            logits = model(input_ids=input_ids.to(device),
                           attention_mask=attention.to(device)).logits.float()
            # token t is predicted by the logits at position t - 1
            logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(
                -1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            totals += (logps * scored[:, 1:].to(device)).sum(-1).tolist()
    n = len(pairs)
    return totals[:n], totals[n:]


def _fraction(xs: list[bool]) -> float:
    return sum(xs) / len(xs)


def preference_figures(policy: tuple[list[float], list[float]],
                       reference: tuple[list[float], list[float]], beta: float) -> dict:
    (pc, pr), (rc, rr) = policy, reference
    chosen = [beta * (a - b) for a, b in zip(pc, rc)]
    rejected = [beta * (a - b) for a, b in zip(pr, rr)]
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {
        "policy": {
            "reward_accuracy": _fraction([m > 0 for m in margins]),
            "reward_margin_mean": sum(margins) / len(margins),
            "reward_chosen_mean": sum(chosen) / len(chosen),
            "reward_rejected_mean": sum(rejected) / len(rejected),
            "logprob_accuracy": _fraction([c > r for c, r in zip(pc, pr)]),
        },
        "reference": {"logprob_accuracy": _fraction([c > r for c, r in zip(rc, rr)])},
    }


@dataclass(frozen=True)
class Precision:
    """How the forward passes run: ``weights`` as loaded, under ``autocast`` if set."""

    weights: str  # a torch dtype name, or "auto" (the checkpoint's own)
    autocast: str | None  # mixed precision: matmuls in this dtype, as the Trainer runs them
    why: str

    @property
    def dtype(self) -> str:
        """The dtype the matmuls run in."""
        return self.autocast or self.weights


def choose_precision(model_spec: str, requested: str = "auto") -> Precision:
    """The precision ``align eval`` scores in: the run's own, unless ``requested`` names one.

    With ``bf16=True`` the Trainer (through accelerate) keeps the weights in the dtype they
    were loaded in (``ModelConfig.dtype``, float32 by default) and runs each forward under
    ``torch.autocast``, so that is what is mirrored here: casting the weights to bf16
    instead rounds them too, and the rewards then drift from the trainer's by ~1e-3.
    """
    from alignment.training import cpu_has_fast_bf16

    record = Path(model_spec) / "metrics.json"
    if not record.is_file():
        if requested == "auto":
            native = cpu_has_fast_bf16()
            requested = "bfloat16" if native else "float32"
            why = (f"no run record ({record.name}) to read it from, and this CPU "
                   f"{'has' if native else 'has no'} native bf16")
        else:
            why = f"--dtype {requested}"
        return Precision("float32", None if requested == "float32" else requested, why)
    config = json.loads(record.read_text()).get("config", {})
    # the section of the trainer's own arguments (DPOConfig, SFTConfig, ...)
    args = next((v for v in config.values() if isinstance(v, dict) and "bf16" in v), {})
    weights = (config.get("ModelConfig") or {}).get("dtype") or "float32"
    mixed = "bfloat16" if args.get("bf16") else "float16" if args.get("fp16") else None
    mode = {"bfloat16": "bf16", "float16": "fp16", None: "no"}[mixed]
    run = f"{mode} mixed precision, {weights} weights"
    if requested != "auto":
        if requested == "float32":
            return Precision("float32", None, f"--dtype float32 (the run: {run})")
        return Precision(weights, None if weights == requested else requested,
                         f"--dtype {requested} (the run: {run})")
    why = f"the run's own ({run}, from {record})"
    if mixed and (args.get("bf16_full_eval") or args.get("fp16_full_eval")):
        return Precision(mixed, None, why)  # the Trainer casts the model to evaluate
    return Precision(weights, None if mixed == weights else mixed, why)


def _run_under_autocast(model, dtype: str) -> None:
    """Wrap ``model.forward`` in autocast, as accelerate does for a mixed-precision run."""
    import torch

    forward = model.forward

    @functools.wraps(forward)
    def autocast_forward(*args, **kwargs):
        device = next(model.parameters()).device.type
        with torch.autocast(device_type=device, dtype=getattr(torch, dtype)):
            return forward(*args, **kwargs)
    model.forward = autocast_forward


def load_policy(model_spec: str, base_spec: str | None, precision: Precision | None = None):
    """(policy, reference, tokenizer, base path); reference is None for an adapter.

    ``precision`` (default: float32 weights, no autocast) sets the weights' dtype and
    whether the forward passes run under autocast.
    """
    from transformers import AutoModelForCausalLM

    from alignment.models import ModelNotAvailable, resolve_model
    from alignment.training import load_tokenizer

    precision = precision or Precision("float32", None, "")
    path = Path(model_spec)

    def load(spec: str):
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=precision.weights)
        if precision.autocast:
            # the inner model: PEFT's forward and generate() both end up in its forward
            _run_under_autocast(model, precision.autocast)
        return model
    try:
        if (path / "adapter_config.json").exists():
            from peft import PeftModel

            recorded = json.loads((path / "adapter_config.json").read_text()).get(
                "base_model_name_or_path")
            base = resolve_model(base_spec or recorded)
            policy = PeftModel.from_pretrained(load(base), str(path))
            reference = None
        else:
            if not base_spec:
                raise ConfigError(f"{model_spec} is a full model, not a LoRA adapter folder; "
                                  "give the reference with --base")
            base = resolve_model(base_spec)
            policy = load(resolve_model(model_spec))
            reference = load(base).eval()
    except ModelNotAvailable as e:
        raise ConfigError(str(e)) from None
    tok_dir = path if (path / "tokenizer_config.json").exists() else Path(base)
    return policy.eval(), reference, load_tokenizer(str(tok_dir)), base


def _recorded_beta(run: Path) -> float | None:
    metrics = run / "metrics.json"
    if metrics.exists():
        return json.loads(metrics.read_text()).get("config", {}).get("DPOConfig", {}).get("beta")
    return None


def evaluate(model: str, dataset: str, base: str | None = None, beta: float | None = None,
             batch_size: int = 4, max_length: int | None = 512,
             max_pairs: int | None = None, judge: str | None = "smollm2",
             win_rate_prompts: int = 10, max_new_tokens: int = 64, samples: int = 5,
             dtype: str = "auto") -> dict:
    """Score every held-out pair under the policy and the reference; return the figures.

    With a ``judge`` (a model spec), also the judged win rate of the policy's greedy
    answers over the reference's on ``win_rate_prompts`` prompts; ``judge=None`` skips it.
    ``dtype`` is ``auto`` (the run's own, see :func:`choose_precision`) or a dtype name.
    """
    from alignment.training import chat_format_pairs, load_pairs, take

    if judge and win_rate_prompts > 0:
        _check_judge(judge, max_new_tokens)
    pairs = take(load_pairs([dataset]), max_pairs)
    beta = beta or _recorded_beta(Path(model)) or 0.1
    precision = choose_precision(model, dtype)
    print(f"align eval: scoring in {precision.dtype}: {precision.why}")
    policy, reference, tokenizer, base_path = load_policy(model, base, precision)
    pairs = chat_format_pairs(pairs, tokenizer)
    tokenized = [tokenize_pair(row, tokenizer) for row in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    policy_logps = completion_logps(policy, tokenized, pad, max_length, batch_size)
    # one copy of the weights for an adapter: the reference is the policy with it switched off
    with _as_reference(policy, reference):
        reference_logps = completion_logps(reference or policy, tokenized, pad, max_length,
                                           batch_size)
    figures = preference_figures(policy_logps, reference_logps, beta)
    result = {"model": str(model), "base": base_path, "dataset": str(dataset),
              "pairs": len(tokenized), "beta": beta, "dtype": precision.dtype,
              "dtype_why": precision.why, **figures, "win_rate": None}
    if judge and win_rate_prompts > 0:
        judged = judge_win_rate(policy, reference, tokenizer, pairs, judge,
                                n_prompts=win_rate_prompts, max_new_tokens=max_new_tokens,
                                samples=samples)
        result["win_rate"] = judged["win_rate"]
        result["judged"] = {k: v for k, v in judged.items() if k != "samples"}
        result["samples"] = judged["samples"]
    return result


def _check_judge(judge: str, max_new_tokens: int) -> None:
    """Refuse a judge that cannot load, before minutes go into scoring and generating."""
    from alignment.models import ModelNotAvailable, resolve_model

    if max_new_tokens < 1:
        raise ConfigError(f"--max_new_tokens {max_new_tokens}: answers need at least one "
                          "token; or pass --no_win_rate to skip the judged win rate")
    try:
        resolve_model(judge)
    except ModelNotAvailable as e:
        raise ConfigError(f"--judge {judge}: {e}; or pass --no_win_rate") from None


def _as_reference(policy, reference):
    return policy.disable_adapter() if reference is None else contextlib.nullcontext()


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


def generate(model, tokenizer, prompts: list, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers to each prompt (a conversation or plain text), batch by batch."""
    import torch

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             if isinstance(p, list) else p for p in prompts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # answers start at the right edge
    device = next(model.parameters()).device
    answers: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            # the chat template already wrote any BOS the model wants
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt",
                              padding=True, add_special_tokens=not isinstance(prompts[0], list))
            with torch.inference_mode():
                out = model.generate(**batch.to(device), max_new_tokens=max_new_tokens,
                                     do_sample=False, pad_token_id=tokenizer.pad_token_id)
            answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                              skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [a.strip() for a in answers]


def prompt_text(prompt) -> str:
    """What the judge reads as the instruction: the user turn, or the whole conversation."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def judge_win_rate(policy, reference, tokenizer, pairs, judge: str, n_prompts: int = 10,
                   max_new_tokens: int = 64, generate_batch_size: int = 16,
                   judge_batch_size: int = 8, samples: int = 5) -> dict:
    """Generate with the policy and the reference, let a PairwiseJudge pick; the figures.

    ``reference`` None means the policy is a PEFT model whose adapter is switched off for
    the reference's answers.
    """
    import time

    from alignment.judges import PairwiseJudge

    started = time.perf_counter()
    prompts = distinct_prompts(pairs, n_prompts)
    # decoding is one token per step for the whole batch: wide batches cost little more
    # than narrow ones on CPU, so every prompt goes in one (up to generate_batch_size)
    trained = generate(policy, tokenizer, prompts, max_new_tokens, generate_batch_size)
    with _as_reference(policy, reference):
        base = generate(reference or policy, tokenizer, prompts, max_new_tokens,
                        generate_batch_size)
    generated = time.perf_counter()
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
        "generate_seconds": round(generated - started, 1),
        "judge_seconds": round(time.perf_counter() - generated, 1),
        "samples": [{"prompt": prompt_text(p), "base": b, "trained": t, "winner": v["winner"],
                     "p_trained": v["p_a"], "consistent": v["consistent"]}
                    for p, b, t, v in list(zip(prompts, base, trained, verdicts))[:samples]],
    }


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


def format_table(result: dict) -> str:
    p, r = result["policy"], result["reference"]
    rows = [("preference accuracy (implicit reward)", f"{p['reward_accuracy']:.3f}", "-"),
            ("mean reward margin", f"{p['reward_margin_mean']:+.4f}", "-"),
            ("log-prob accuracy", f"{p['logprob_accuracy']:.3f}", f"{r['logprob_accuracy']:.3f}")]
    lines = [f"{result['pairs']} held-out pairs, beta={result['beta']}",
             f"{'':<38} {'policy':>8} {'reference':>10}"]
    lines += [f"{name:<38} {a:>8} {b:>10}" for name, a, b in rows]
    j = result.get("judged")
    if j:
        def pct(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"
        lines += [f"judged win rate vs reference ({j['judge']}, {j['judged']}/{j['prompts']} "
                  f"prompts, {j['wins']}W {j['losses']}L {j['ties']}T)",
                  f"{'  win rate (ties count half)':<38} {pct(j['win_rate']):>8}",
                  f"{'  tie rate':<38} {pct(j['tie_rate']):>8}",
                  f"{'  position-inconsistent rate':<38} {pct(j['position_inconsistent_rate']):>8}",
                  f"{'  mean P(trained better), both orders':<38} {pct(j['p_trained_mean']):>8}"]
        if j["identical_answers"]:
            lines.append(f"  ({j['identical_answers']} prompt(s) got the same answer from both)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="align eval", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True,
                        help="a training run's output dir (LoRA adapter) or a full model")
    parser.add_argument("--base", help="the reference model (default: the adapter's base)")
    parser.add_argument("--dataset", required=True, help="held-out preference pairs")
    parser.add_argument("--output", help="JSON file for the figures "
                                         "(default: MODEL/eval.json for a run folder)")
    parser.add_argument("--beta", type=float,
                        help="DPO beta (default: the run's own, else 0.1)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--max_pairs", type=int, help="score at most this many pairs")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto (default): the run's own, as its trainer evaluated "
                             "(metrics.json); without a run record float32, or bfloat16 on "
                             "a CPU with native bf16")
    judged = parser.add_argument_group(
        "judged win rate", "greedy answers of the policy and the reference to held-out "
        "prompts, compared by an AI judge in both orders; on by default")
    judged.add_argument("--judge", default="smollm2",
                        help="judge model: bundled name, folder or hub id (default: smollm2, "
                             "135M parameters: weak and position-biased, a smoke signal only)")
    judged.add_argument("--no_win_rate", "--no-win-rate", action="store_true",
                        help="skip generation and judging")
    judged.add_argument("--win_rate_prompts", "--win-rate-prompts", type=int, default=10,
                        help="judge the first N distinct held-out prompts (default 10)")
    judged.add_argument("--max_new_tokens", "--max-new-tokens", type=int, default=64,
                        help="longest greedy answer, in tokens (default 64)")
    judged.add_argument("--samples", type=int, default=5,
                        help="answers kept side by side in the JSON and <output>.samples.md")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    result = evaluate(args.model, args.dataset, base=args.base, beta=args.beta,
                      batch_size=args.batch_size, max_length=args.max_length,
                      max_pairs=args.max_pairs, judge=None if args.no_win_rate else args.judge,
                      win_rate_prompts=args.win_rate_prompts,
                      max_new_tokens=args.max_new_tokens, samples=args.samples,
                      dtype=args.dtype)
    print(format_table(result))
    output = args.output or (Path(args.model) / "eval.json" if Path(args.model).is_dir() else None)
    if output:
        Path(output).write_text(json.dumps(result, indent=2))
        print(f"figures: {output}")
        if result.get("samples"):
            md = Path(output).with_suffix(".samples.md")
            md.write_text(samples_markdown(result))
            print(f"samples: {md}")
    return 0
