"""Preference evaluation of a trained policy against its reference on held-out pairs.

    align eval --model RUN_DIR_OR_MODEL [--base BASE] --dataset HELD_OUT_PAIRS [--output FILE]

For each pair the implicit DPO reward of a completion y is
``r(y) = beta * (log pi(y|x) - log pi_ref(y|x))``, summed over the completion's tokens.
Reported: the fraction of pairs with r(chosen) > r(rejected) (preference accuracy), the
mean margin r(chosen) - r(rejected), and, for both the policy and the reference alone,
the fraction with log pi(chosen) > log pi(rejected) — what each model "prefers" before
any reference correction, so a reader sees where the base model already stood.

A run folder holding a LoRA adapter (``adapter_config.json``) is loaded once: the policy
is the base with the adapter, the reference the same weights with the adapter off. A
full model needs ``--base`` and loads both.

A judged win rate (policy vs base generations, scored by an AI judge) belongs here too;
``win_rate`` in the output stays null until a judge is wired in through ``judge_win_rate``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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


def load_policy(model_spec: str, base_spec: str | None):
    """(policy, reference, tokenizer, base path); reference is None for an adapter."""
    from transformers import AutoModelForCausalLM

    from alignment.models import ModelNotAvailable, resolve_model
    from alignment.training import load_tokenizer

    path = Path(model_spec)
    try:
        if (path / "adapter_config.json").exists():
            from peft import PeftModel

            recorded = json.loads((path / "adapter_config.json").read_text()).get(
                "base_model_name_or_path")
            base = resolve_model(base_spec or recorded)
            policy = PeftModel.from_pretrained(
                AutoModelForCausalLM.from_pretrained(base, dtype="float32"), str(path))
            reference = None
        else:
            if not base_spec:
                raise ConfigError(f"{model_spec} is a full model, not a LoRA adapter folder; "
                                  "give the reference with --base")
            base = resolve_model(base_spec)
            policy = AutoModelForCausalLM.from_pretrained(resolve_model(model_spec), dtype="float32")
            reference = AutoModelForCausalLM.from_pretrained(base, dtype="float32").eval()
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
             max_pairs: int | None = None) -> dict:
    """Score every held-out pair under the policy and the reference; return the figures."""
    from alignment.training import chat_format_pairs, load_pairs, take

    pairs = take(load_pairs([dataset]), max_pairs)
    beta = beta or _recorded_beta(Path(model)) or 0.1
    policy, reference, tokenizer, base_path = load_policy(model, base)
    pairs = chat_format_pairs(pairs, tokenizer)
    tokenized = [tokenize_pair(row, tokenizer) for row in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    policy_logps = completion_logps(policy, tokenized, pad, max_length, batch_size)
    # one copy of the weights for an adapter: the reference is the policy with it switched off
    with policy.disable_adapter() if reference is None else contextlib.nullcontext():
        reference_logps = completion_logps(reference or policy, tokenized, pad, max_length,
                                           batch_size)
    figures = preference_figures(policy_logps, reference_logps, beta)
    return {"model": str(model), "base": base_path, "dataset": str(dataset),
            "pairs": len(tokenized), "beta": beta, **figures,
            "win_rate": judge_win_rate(policy, reference, pairs, judge=None)}


def judge_win_rate(policy, reference, pairs, judge=None) -> float | None:
    """Where a judged win rate plugs in: generate with both models, let ``judge`` pick.

    Not computed yet: returns None when no judge is given.
    """
    if judge is None:
        return None
    raise ConfigError("judged win rate is not available yet; run without a judge")


def format_table(result: dict) -> str:
    p, r = result["policy"], result["reference"]
    rows = [("preference accuracy (implicit reward)", f"{p['reward_accuracy']:.3f}", "-"),
            ("mean reward margin", f"{p['reward_margin_mean']:+.4f}", "-"),
            ("log-prob accuracy", f"{p['logprob_accuracy']:.3f}", f"{r['logprob_accuracy']:.3f}")]
    lines = [f"{result['pairs']} held-out pairs, beta={result['beta']}",
             f"{'':<38} {'policy':>8} {'reference':>10}"]
    lines += [f"{name:<38} {a:>8} {b:>10}" for name, a, b in rows]
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    result = evaluate(args.model, args.dataset, base=args.base, beta=args.beta,
                      batch_size=args.batch_size, max_length=args.max_length,
                      max_pairs=args.max_pairs)
    print(format_table(result))
    output = args.output or (Path(args.model) / "eval.json" if Path(args.model).is_dir() else None)
    if output:
        Path(output).write_text(json.dumps(result, indent=2))
        print(f"figures: {output}")
    return 0
