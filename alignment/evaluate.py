"""Evaluation of a trained policy against its reference: on held-out pairs, and on held-out
prompts whose answers are checked.

    align eval --model RUN_DIR_OR_MODEL [--base BASE] --dataset HELD_OUT_PAIRS [--output FILE]
              [--dtype auto|float32|bfloat16]
    align eval --model RUN_DIR --prompts HELD_OUT_PROMPTS [--factual [QUESTIONS]]

With ``--prompts`` (rows carrying verifier specs, as ``align generate constraints``
writes them) both models answer every prompt greedily and ``alignment.following``
reports the follow rate of each, overall and per verifier, with the difference and its
paired bootstrap 95% interval; ``--factual`` adds questions with known answers, so a
gain in following that costs knowledge shows. The judged win rate then compares the
same answers.

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
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import ConfigError
from alignment.following import FACTUAL as FACTUAL_DEFAULT


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
            # a prompt-tuned policy puts its virtual tokens' positions first: drop them
            logits = logits[:, -width:]
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
    from alignment.hardware import cpu_has_fast_bf16

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
    from alignment.models import load_tokenizer

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

            from alignment.models import check_weight_files

            check_weight_files(path)

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


def evaluate(model: str, dataset: str | None = None, base: str | None = None,
             beta: float | None = None, batch_size: int = 4, max_length: int | None = 512,
             max_pairs: int | None = None, judge: str | None = "smollm2",
             win_rate_prompts: int = 10, max_new_tokens: int = 64, samples: int = 5,
             dtype: str = "auto", prompts: str | None = None, factual: str | None = None,
             seed: int = 0) -> dict:
    """The policy against its reference; return the figures.

    ``dataset``: held-out preference pairs, scored under both models. ``prompts``:
    held-out prompts that carry verifier specs, answered greedily by both and checked
    (``alignment.following``), with ``factual`` questions beside them. With a ``judge``
    (a model spec), also the judged win rate of the policy's greedy answers over the
    reference's (on the ``prompts`` when given, else on ``win_rate_prompts`` prompts of the
    pairs); ``judge=None`` skips it. ``dtype`` is ``auto`` (the run's own, see
    :func:`choose_precision`) or a dtype name.
    """
    from alignment import following
    from alignment.data.training_sets import chat_format_pairs, load_pairs, take

    if dataset is None and prompts is None:
        raise ConfigError("nothing to evaluate: give --dataset (held-out pairs) and/or "
                          "--prompts (held-out prompts with verifier specs)")
    if judge and win_rate_prompts > 0:
        _check_judge(judge, max_new_tokens)
    pairs = take(load_pairs([dataset]), max_pairs) if dataset else None
    checked = following.read_checked_prompts(prompts) if prompts else None
    questions = following.read_factual(factual) if factual else None
    precision = choose_precision(model, dtype)
    print(f"align eval: scoring in {precision.dtype}: {precision.why}")
    policy, reference, tokenizer, base_path = load_policy(model, base, precision)
    result = {"model": str(model), "base": base_path, "dtype": precision.dtype,
              "dtype_why": precision.why, "win_rate": None}
    if pairs is not None:
        result.update(score_pairs(policy, reference, tokenizer, pairs, dataset,
                                  beta or _recorded_beta(Path(model)) or 0.1, batch_size,
                                  max_length))
        pairs = chat_format_pairs(pairs, tokenizer)
    if checked is not None:
        result.update(evaluate_prompts(policy, reference, tokenizer, checked, questions,
                                       judge=judge if win_rate_prompts > 0 else None,
                                       max_new_tokens=max_new_tokens, samples=samples,
                                       seed=seed))
        result["prompts_file"] = str(prompts)
    elif judge and win_rate_prompts > 0:
        from alignment.winrate import distinct_prompts, judge_win_rate

        judged = judge_win_rate(policy, reference, tokenizer,
                                distinct_prompts(pairs, win_rate_prompts), judge,
                                max_new_tokens=max_new_tokens, samples=samples)
        result["win_rate"] = judged["win_rate"]
        result["judged"] = {k: v for k, v in judged.items() if k != "samples"}
        result["samples"] = judged["samples"]
    return result


def score_pairs(policy, reference, tokenizer, pairs, dataset: str, beta: float,
                batch_size: int, max_length: int | None) -> dict:
    """Implicit-reward and log-prob figures of held-out pairs under both models."""
    from alignment.data.training_sets import chat_format_pairs
    from alignment.winrate import as_reference

    pairs = chat_format_pairs(pairs, tokenizer)
    tokenized = [tokenize_pair(row, tokenizer) for row in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    policy_logps = completion_logps(policy, tokenized, pad, max_length, batch_size)
    # one copy of the weights for an adapter: the reference is the policy with it switched off
    with as_reference(policy, reference):
        reference_logps = completion_logps(reference or policy, tokenized, pad, max_length,
                                           batch_size)
    return {"dataset": str(dataset), "pairs": len(tokenized), "beta": beta,
            **preference_figures(policy_logps, reference_logps, beta)}


def evaluate_prompts(policy, reference, tokenizer, rows: list[dict],
                     questions: list[dict] | None, *, judge: str | None, max_new_tokens: int,
                     samples: int = 5, seed: int = 0, base_answers: dict | None = None,
                     judge_batch_size: int = 8) -> dict:
    """Follow rates (and factual accuracy, and the judged win rate) of both models'
    greedy answers to ``rows``; ``base_answers`` (``{"prompts": [...], "factual": [...]}``
    of ``Generation``s) reuses the base's answers from an earlier call."""
    import time

    from alignment import following

    started = time.perf_counter()
    base_answers = base_answers or {}
    trained, base = following.answer_both(policy, reference, tokenizer,
                                          [r["prompt"] for r in rows], max_new_tokens,
                                          base_answers.get("prompts"))
    out = {"following": following.follow_figures(rows, trained, base, seed),
           "factual": None, "max_new_tokens": max_new_tokens,
           "answers": {"trained": trained, "base": base}}
    if questions:
        t_fact, b_fact = following.answer_both(policy, reference, tokenizer,
                                               [q["question"] for q in questions],
                                               max_new_tokens, base_answers.get("factual"))
        out["factual"] = following.factual_figures(questions, t_fact, b_fact, seed)
        out["answers"].update(trained_factual=t_fact, base_factual=b_fact)
    out["generate_seconds"] = round(time.perf_counter() - started, 1)
    if judge:
        from alignment.winrate import judge_answers

        judged = judge_answers([r["prompt"] for r in rows], [g.text.strip() for g in trained],
                               [g.text.strip() for g in base], judge, judge_batch_size,
                               samples, max_new_tokens)
        out["win_rate"] = judged["win_rate"]
        out["judged"] = {k: v for k, v in judged.items() if k != "samples"}
        out["samples"] = judged["samples"]
    return out


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


def format_table(result: dict) -> str:
    from alignment.following import format_following
    from alignment.winrate import format_judged

    lines = []
    if "policy" in result:
        p, r = result["policy"], result["reference"]
        rows = [("preference accuracy (implicit reward)", f"{p['reward_accuracy']:.3f}", "-"),
                ("mean reward margin", f"{p['reward_margin_mean']:+.4f}", "-"),
                ("log-prob accuracy", f"{p['logprob_accuracy']:.3f}",
                 f"{r['logprob_accuracy']:.3f}")]
        lines += [f"{result['pairs']} held-out pairs, beta={result['beta']}",
                  f"{'':<38} {'policy':>8} {'reference':>10}"]
        lines += [f"{name:<38} {a:>8} {b:>10}" for name, a, b in rows]
    if result.get("following"):
        lines += format_following(result["following"], result.get("factual"))
    if result.get("judged"):
        lines += format_judged(result["judged"])
    return "\n".join(lines)


def _jsonable_result(result: dict) -> dict:
    """The figures as JSON: answers become {text, finish_reason, tokens} records."""
    out = dict(result)
    if "answers" in out:
        out["answers"] = {k: [vars(g) for g in v] for k, v in out["answers"].items()}
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="align eval", description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--model", required=True,
                        help="a training run's output dir (LoRA adapter) or a full model")
    parser.add_argument("--base", help="the reference model (default: the adapter's base)")
    parser.add_argument("--dataset", help="held-out preference pairs")
    parser.add_argument("--prompts", help="held-out prompts carrying verifier specs (`align "
                        "generate constraints` writes them): follow rates of both models")
    parser.add_argument("--factual", nargs="?", const=str(FACTUAL_DEFAULT),
                        help="factual questions with accepted answers, checked beside "
                             "--prompts (no value: the shipped 30)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--output", help="JSON file for the figures "
                                         "(default: MODEL/eval.json for a run folder)")
    parser.add_argument("--beta", type=float,
                        help="DPO beta (default: the run's own, else 0.1)")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=4)
    parser.add_argument("--max-length", "--max_length", type=int, default=512)
    parser.add_argument("--max-pairs", "--max_pairs", type=int, help="score at most this many pairs")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto (default): the run's own, as its trainer evaluated "
                             "(metrics.json); without a run record float32, or bfloat16 on "
                             "a CPU with native bf16")
    judged = parser.add_argument_group(
        "judged win rate", "greedy answers of the policy and the reference to held-out "
        "prompts, compared by an AI judge in both orders; on by default")
    judged.add_argument("--judge", default=None,
                        help="judge model: bundled name, folder or hub id (default: smollm2, "
                             "135M parameters: weak and position-biased, a smoke signal only)")
    judged.add_argument("--judge-from", "--judge_from", metavar="CALIBRATION",
                        help="pick the judge that agrees best with people: the calibration.json "
                             "of `align annotate calibrate` (its best-agreeing judge that "
                             "loads here)")
    judged.add_argument("--no-win-rate", "--no_win_rate", action="store_true",
                        help="skip generation and judging")
    judged.add_argument("--win-rate-prompts", "--win_rate_prompts", type=int, default=10,
                        help="judge the first N distinct held-out prompts (default 10)")
    judged.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=64,
                        help="longest greedy answer, in tokens (default 64)")
    judged.add_argument("--samples", type=int, default=5,
                        help="answers kept side by side in the JSON and <output>.samples.md")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    choice = None
    if args.judge_from and args.judge:
        raise ConfigError("--judge and --judge-from both name the judge: pass one")
    if args.judge_from and not args.no_win_rate:
        from alignment.winrate import format_choice, pick_judge

        choice = pick_judge(args.judge_from)
        print("\n".join(format_choice(choice)))
    judge = choice["judge"] if choice else (args.judge or "smollm2")
    result = evaluate(args.model, args.dataset, base=args.base, beta=args.beta,
                      batch_size=args.batch_size, max_length=args.max_length,
                      max_pairs=args.max_pairs, judge=None if args.no_win_rate else judge,
                      win_rate_prompts=args.win_rate_prompts,
                      max_new_tokens=args.max_new_tokens, samples=args.samples,
                      dtype=args.dtype, prompts=args.prompts, factual=args.factual,
                      seed=args.seed)
    if choice:
        result["judge_choice"] = choice
    print(format_table(result))
    output = args.output or (Path(args.model) / "eval.json" if Path(args.model).is_dir() else None)
    if output:
        Path(output).write_text(json.dumps(_jsonable_result(result), indent=2))
        print(f"figures: {output}")
        if result.get("samples"):
            md = Path(output).with_suffix(".samples.md")
            from alignment.winrate import samples_markdown

            md.write_text(samples_markdown(result))
            print(f"samples: {md}")
    return 0
