"""align loop: on-policy rounds of DPO against verifiers (iterative, self-rewarding DPO).

    align loop --prompts data/constraints/train.jsonl --heldout data/constraints/heldout.jsonl
               [--model smollm2] [--rounds 2] [--candidates 4] [--output runs/loop]

Round k: the current policy (the base in round 1, round k-1's adapter after) samples
``--candidates`` answers to ``--prompts-per-round`` training prompts; every answer is
scored by the verifiers its prompt carries (and, with ``--judge``, by an AI judge, mixed
in with ``--judge-weight``); the best and the worst answer of a prompt become a pair when
their scores differ by ``--margin``; `align dpo` continues from the current adapter on
those pairs; and the new policy is evaluated on the held-out prompts, greedy, against
the base measured the same way (follow rate per verifier with a paired bootstrap 95%
interval, factual questions, judged win rate in both orders).

Answers cut off by the token limit are cut back to their last whole sentence
(``--trim``, on by default; marked ``trimmed``) or, with ``--no-trim``, never paired
unless ``--keep-truncated``. With
``--repair`` (on by default) a prompt none of whose answers pass gets a chosen answer all
the same when its checks have a repair (``alignment.verifiers.REPAIRS``): the best answer,
minimally edited to pass (lowercased, cut to whole sentences, quoted...), against the
worst as written; checks without one (keyword counts, arithmetic) pair only what the
policy wrote. The held-out figures never use repairs: they are the model's own answers.

Every stage writes its output atomically into ``OUTPUT/round-K/`` (``candidates.jsonl``,
``scored.jsonl``, ``pairs.jsonl``, ``dpo/``, ``eval.json``) and a stage whose output is
there is not run again, so a killed loop, started again with the same command, resumes
at the round and stage where it stopped (DPO from its last checkpoint). ``loop.json``
records the settings (a rerun with other settings is refused; ``--fresh`` starts over),
``summary.json`` the figures of every round and ``loop.png`` plots them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from alignment.errors import ConfigError

STAGES = ("candidates", "scored", "pairs", "dpo", "eval")


# `align dpo` settings of every round, from a measured sweep on the bundled model's
# round-1 pairs (README, "Choosing the loop's DPO settings"): a higher rate, two epochs,
# beta 0.5, LoRA on every linear layer and the chosen answers' NLL beside the DPO loss
LOOP_DPO = ["--learning_rate", "5e-4", "--num_train_epochs", "2", "--beta", "0.5",
            "--lora_target_modules", "all-linear", "--loss_type", "sigmoid", "sft",
            "--loss_weights", "1", "1"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", required=True,
                   help="training prompts carrying verifier specs (align generate constraints)")
    p.add_argument("--heldout", required=True, help="held-out prompts with verifier specs")
    p.add_argument("--factual", default="shipped",
                   help="factual questions checked beside the held-out prompts (`shipped`: "
                        "the 30 in alignment/evalsets; `none` to skip)")
    p.add_argument("--model", default="smollm2", help="the base policy (default smollm2)")
    p.add_argument("--output", "-o", default="runs/loop")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--prompts-per-round", type=int, default=64,
                   help="training prompts sampled (without replacement) for each round")
    p.add_argument("--candidates", type=int, default=4, help="answers sampled per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=96,
                   help="token limit of sampled and held-out answers")
    p.add_argument("--batch-size", type=int, default=32, help="prompts decoded together")
    p.add_argument("--margin", type=float, default=0.25,
                   help="smallest score gap between chosen and rejected")
    p.add_argument("--repair", action=argparse.BooleanOptionalAction, default=True,
                   help="pair a repaired answer when no sampled answer passes (see above)")
    p.add_argument("--keep-truncated", action="store_true",
                   help="also pair answers the token limit cut off, as they are")
    p.add_argument("--trim", action=argparse.BooleanOptionalAction, default=True,
                   help="cut an answer the token limit cut off back to its last whole "
                        "sentence, and score and pair it as such")
    p.add_argument("--judge", default=None,
                   help="AI judge mixed into the candidates' scores (rating-token "
                        "probabilities; e.g. qwen-judge); default: verifiers only")
    p.add_argument("--judge-weight", type=float, default=0.25,
                   help="weight of the judge's (0-1 scaled) rating against the verifiers'")
    p.add_argument("--win-rate-judge", default="smollm2",
                   help="judge of the held-out win rate (both orders); `none` to skip")
    p.add_argument("--dpo", default="", metavar="FLAGS",
                   help="extra `align dpo` flags for every round, as one string, after the "
                        "loop's own (" + " ".join(LOOP_DPO) + "), so they win "
                        "(e.g. \"--beta 0.1 --learning_rate 1e-4\")")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete OUTPUT and start over")
    return p


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from alignment import following
    from alignment.models import ModelNotAvailable, resolve_model

    # --- Refuse what cannot work, before any model loads ------------------------------
    for name in ("rounds", "prompts_per_round", "candidates", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if args.candidates < 2 and not args.repair:
        raise ConfigError("--candidates 1 makes no pairs without --repair")
    if not 0 <= args.judge_weight <= 1:
        raise ConfigError("--judge-weight must be between 0 and 1")
    train = following.read_checked_prompts(args.prompts)
    heldout = following.read_checked_prompts(args.heldout)
    overlap = {r.get("task_id") for r in train} & {r.get("task_id") for r in heldout} - {None}
    if overlap:
        raise ConfigError(f"{len(overlap)} task(s) are on both sides (e.g. {sorted(overlap)[0]}): "
                          "held-out tasks must never be trained on")
    factual = None if args.factual == "none" else following.read_factual(
        following.FACTUAL if args.factual == "shipped" else args.factual)
    try:
        base = resolve_model(args.model)
    except ModelNotAvailable as e:
        raise ConfigError(str(e)) from None
    dpo_flags = LOOP_DPO + shlex.split(args.dpo)
    out = Path(args.output)
    state = _start(out, args, base)

    # --- The base, measured once on the held-out prompts -------------------------------
    rounds: list[dict] = []
    base_answers = _base_answers(out, args, base, heldout, factual)
    for k in range(1, args.rounds + 1):
        rounds.append(_round(k, out, args, base, train, heldout, factual, base_answers,
                             dpo_flags))
        _write_json(out / "summary.json", _summary(state, rounds))
        _plot(out / "loop.png", rounds)
    print(_table(rounds))
    print(f"\nalign loop: {args.rounds} round(s) in {out}  (summary.json, loop.png; "
          f"round-K/ holds each round's data, adapter and figures)")
    return 0


# ------------------------------------------------------------------------ a round

def _round(k: int, out: Path, args, base: str, train: list[dict], heldout: list[dict],
           factual: list[dict] | None, base_answers: dict, dpo_flags: list[str]) -> dict:
    folder = out / f"round-{k}"
    folder.mkdir(parents=True, exist_ok=True)
    policy_dir = None if k == 1 else out / f"round-{k - 1}" / "dpo"
    started = time.time()
    print(f"\n=== round {k}/{args.rounds}: policy = "
          f"{'the base' if policy_dir is None else policy_dir} ===", flush=True)

    if not (folder / "candidates.jsonl").exists():
        prompts = random.Random(args.seed * 1000 + k).sample(
            train, min(args.prompts_per_round, len(train)))
        rows = _candidates(base, policy_dir, prompts, args, seed=args.seed * 1000 + k)
        _write(folder / "candidates.jsonl", rows, "Candidate answers of the policy", {
            "round": k, "policy": str(policy_dir or base), "prompts": len(rows),
            "candidates_per_prompt": args.candidates, "temperature": args.temperature,
            "max_new_tokens": args.max_new_tokens,
            "truncated": sum(sum(r["truncated"]) for r in rows)})
    rows = _read(folder / "candidates.jsonl")

    if not (folder / "scored.jsonl").exists():
        scored, info = _score(rows, args)
        _write(folder / "scored.jsonl", scored, "Candidates scored by their verifiers", info)
    scored = _read(folder / "scored.jsonl")

    if not (folder / "pairs.jsonl").exists():
        pairs, counts = make_pairs(scored, margin=args.margin, repair=args.repair,
                                   keep_truncated=args.keep_truncated)
        if not pairs:
            raise ConfigError(f"round {k}: no pair had a score gap of {args.margin} ({counts}); "
                              "sample more --candidates, raise --max-new-tokens (truncated "
                              "answers are not paired unless --keep-truncated), lower --margin "
                              "or turn --repair on")
        _write(folder / "pairs.jsonl", pairs, "On-policy preference pairs", {"round": k, **counts})
    pairs = _read(folder / "pairs.jsonl")

    run_dir = folder / "dpo"
    if not (run_dir / "metrics.json").exists():
        _train(folder / "pairs.jsonl", run_dir, base, policy_dir, dpo_flags, args.seed)

    if not (folder / "eval.json").exists():
        figures = _evaluate(run_dir, heldout, factual, base_answers, args)
        _write_json(folder / "eval.json", figures)
    figures = json.loads((folder / "eval.json").read_text())
    f = figures["following"]["follow_rate"]
    print(f"round {k}: {len(pairs)} pairs; held-out follow rate {100 * f['base']:.1f}% (base) -> "
          f"{100 * f['policy']:.1f}% ({_ci(f)}) [{time.time() - started:.0f}s]", flush=True)
    return {"round": k, "pairs": len(pairs), "repaired": sum(p.get("repaired", False) for p in pairs),
            "candidates_truncated": sum(sum(r["truncated"]) for r in rows),
            "candidate_pass_rate": _mean([p for r in scored for p in r["passed"]]),
            "train_loss": json.loads((run_dir / "metrics.json").read_text()).get("train_loss_mean"),
            **{k2: figures.get(k2) for k2 in ("following", "factual", "win_rate", "judged")}}


def _candidates(base: str, policy_dir: Path | None, prompts: list[dict], args,
                seed: int) -> list[dict]:
    """Ranked rows (unscored): ``--candidates`` sampled answers per prompt, with how each ended."""
    from alignment import engine

    model, tokenizer = _load(base, policy_dir)
    with engine.adapter_merged(model):
        gens = engine.generate(model, tokenizer, [p["prompt"] for p in prompts],
                               max_new_tokens=args.max_new_tokens, do_sample=True,
                               temperature=args.temperature, top_p=args.top_p,
                               num_return_sequences=args.candidates, batch_size=args.batch_size,
                               seed=seed, progress="candidates")
    name = str(policy_dir or args.model)
    return [{"id": p["id"], "prompt": p["prompt"], "task_id": p.get("task_id"),
             "verifiers": p["verifiers"], "responses": [g.text.strip() for g in answers],
             "models": [name] * len(answers), "finish_reasons": [g.finish_reason for g in answers],
             "truncated": [g.truncated for g in answers]}
            for p, answers in zip(prompts, gens)]


def _score(rows: list[dict], args) -> tuple[list[dict], dict]:
    """Each candidate's verifier score (partial credit), mixed with an AI judge's if asked."""
    from alignment import verifiers

    # trimmed first, so the judge rates the very text a pair would carry
    rows = [_trimmed(r) if args.trim and not args.keep_truncated else r for r in rows]
    judged = None
    if args.judge:
        from alignment.judges import RatingJudge

        judge = RatingJudge(args.judge)
        flat = [(r["prompt"], a) for r in rows for a in r["responses"]]
        verdicts = judge.score([p for p, _ in flat], [a for _, a in flat])
        low, high = judge.scale
        it = iter(verdicts)
        judged = [[None if (v := next(it))["score"] is None else (v["score"] - low) / (high - low)
                   for _ in r["responses"]] for r in rows]
    out = []
    for i, row in enumerate(rows):
        verdicts = [verifiers.score(row["verifiers"], a) for a in row["responses"]]
        scores = [v["score"] for v in verdicts]
        if judged is not None:
            w = args.judge_weight
            scores = [None if j is None else (1 - w) * s + w * j
                      for s, j in zip(scores, judged[i])]
        out.append({**row, "scores": scores, "passed": [v["passed"] for v in verdicts],
                    "verifier_results": [v["results"] for v in verdicts],
                    "judge": "verifiers" + (f"+{args.judge}" if args.judge else "")})
    info = {"judge": out[0]["judge"] if out else "verifiers",
            "trimmed_to_whole_sentences": sum(sum(r.get("trimmed", [])) for r in out),
            "judge_weight": args.judge_weight if args.judge else 0.0,
            "responses": sum(len(r["responses"]) for r in out),
            "passing_all_checks": sum(sum(r["passed"]) for r in out),
            "no_verdict": sum(s is None for r in out for s in r["scores"])}
    return out, info


def _trimmed(row: dict) -> dict:
    """The row with each cut-off answer cut back to its last whole sentence, where it has
    one: no longer truncated, marked ``trimmed``; its finish reason stays ``length``."""
    from alignment.verifiers import whole_sentences

    responses, truncated, trimmed = list(row["responses"]), list(row["truncated"]), []
    for i, cut in enumerate(row["truncated"]):
        short = whole_sentences(responses[i]) if cut else None
        trimmed.append(short is not None)
        if short is not None:
            responses[i], truncated[i] = short, False
    return {**row, "responses": responses, "truncated": truncated, "trimmed": trimmed}


def make_pairs(rows: list[dict], margin: float = 0.25, repair: bool = True,
               keep_truncated: bool = False) -> tuple[list[dict], dict]:
    """One pair per scored row: its best answer against its worst (see the module doc)."""
    from alignment import verifiers

    pairs, counts = [], {"rows": len(rows), "pairs": 0, "repaired": 0, "truncated_skipped": 0,
                         "no_gap": 0, "unscored": 0}
    for row in rows:
        keep = [i for i, s in enumerate(row["scores"]) if s is not None
                and (keep_truncated or not row["truncated"][i])]
        counts["truncated_skipped"] += sum(bool(t) for t in row["truncated"]) if not keep_truncated else 0
        counts["unscored"] += sum(s is None for s in row["scores"])
        if not keep:
            continue
        ranked = sorted(keep, key=lambda i: -row["scores"][i])
        best, worst = ranked[0], ranked[-1]
        chosen, chosen_score, repaired = row["responses"][best], row["scores"][best], False
        if repair and not row["passed"][best]:
            fixed = verifiers.repair(row["verifiers"], chosen)
            if fixed is not None:
                chosen, chosen_score, repaired = fixed, 1.0, True
        if chosen_score - row["scores"][worst] < margin:
            counts["no_gap"] += 1
            continue
        pairs.append({"id": row["id"], "prompt": row["prompt"], "chosen": chosen,
                      "rejected": row["responses"][worst], "score_chosen": chosen_score,
                      "score_rejected": row["scores"][worst], "repaired": repaired})
        counts["repaired"] += repaired
    counts["pairs"] = len(pairs)
    return pairs, counts


def _train(pairs: Path, run_dir: Path, base: str, policy_dir: Path | None,
           flags: list[str], seed: int) -> None:
    """`align dpo` on the round's pairs, from the current adapter, in a child process."""
    args = ["dpo", "--dataset", str(pairs), "--model", base, "--output_dir", str(run_dir),
            "--eval_split", "0", "--eval_strategy", "no", "--seed", str(seed),
            "--save_strategy", "steps", "--save_steps", "10", "--save_total_limit", "1",
            "--logging_steps", "1"]
    if policy_dir is not None:
        args += ["--init_adapter", str(policy_dir)]
    if any(run_dir.glob("checkpoint-*")):  # killed mid-training: go on from there
        args += ["--resume_from_checkpoint", "latest"]
    args += flags
    print("$ align " + " ".join(shlex.quote(a) for a in args), flush=True)
    proc = subprocess.run([sys.executable, "-m", "alignment.cli", *args])
    if proc.returncode != 0:
        raise ConfigError(f"`align dpo` failed with exit code {proc.returncode}; fix the cause "
                          "and run the same `align loop` command again to resume")


def _evaluate(run_dir: Path, heldout: list[dict], factual: list[dict] | None,
              base_answers: dict, args) -> dict:
    from alignment.evaluate import evaluate_prompts
    from alignment.engine import Generation

    model, tokenizer = _load(None, run_dir)
    cached = {k: [Generation(**g) for g in v] for k, v in base_answers.items()}
    judge = None if args.win_rate_judge == "none" else args.win_rate_judge
    result = evaluate_prompts(model, None, tokenizer, heldout, factual, judge=judge,
                              max_new_tokens=args.max_new_tokens, seed=args.seed,
                              base_answers=cached)
    result["answers"] = {k: [vars(g) for g in v] for k, v in result["answers"].items()}
    return result


def _base_answers(out: Path, args, base: str, heldout: list[dict],
                  factual: list[dict] | None) -> dict:
    """The base's greedy answers to the held-out prompts and questions, computed once."""
    from alignment.winrate import greedy_answers

    path = out / "base_answers.json"
    if path.exists():
        return json.loads(path.read_text())
    print("=== the base on the held-out prompts ===", flush=True)
    model, tokenizer = _load(base, None)
    answers = {}
    for key, texts in (("prompts", [r["prompt"] for r in heldout]),
                       ("factual", [q["question"] for q in factual or []])):
        if texts:
            gens = greedy_answers(model, tokenizer, texts, args.max_new_tokens,
                                  args.batch_size, merge=False)
            answers[key] = [vars(g) for g in gens]
    _write_json(path, answers)
    return answers


# ------------------------------------------------------------------------ helpers

def _load(base: str | None, adapter: Path | None):
    """The base, or the base with an adapter on; tokenizer padded on the left."""
    from alignment.engine import pick_dtype
    from alignment.models import load_tokenizer

    import torch
    from transformers import AutoModelForCausalLM

    dtype, _ = pick_dtype()
    if adapter is not None:
        from peft import PeftModel

        recorded = json.loads((adapter / "adapter_config.json").read_text())[
            "base_model_name_or_path"]
        model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base or recorded, dtype=getattr(torch, dtype)),
            str(adapter))
        tokenizer = load_tokenizer(str(adapter))
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
        tokenizer = load_tokenizer(base)
    return model.eval(), tokenizer


def _start(out: Path, args, base: str) -> dict:
    """``loop.json``: the settings this folder's rounds were made with."""
    from alignment.engine import pick_dtype

    settings = {k: v for k, v in vars(args).items() if k not in ("fresh", "rounds", "output")}
    settings["base_path"] = base
    if args.fresh and out.exists():
        shutil.rmtree(out)
    path = out / "loop.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old["settings"] != settings:
            changed = sorted(k for k in settings.keys() | old["settings"].keys()
                             if settings.get(k) != old["settings"].get(k))
            raise ConfigError(f"{out} holds a loop run with other settings ({', '.join(changed)}); "
                              "use another --output, or --fresh to start over")
        print(f"align loop: resuming {out}")
        return old
    dtype, why = pick_dtype()
    state = {"settings": settings, "dtype": dtype, "dtype_why": why}
    _write_json(path, state)
    print(f"align loop: generating in {dtype} ({why})")
    return state


def _write(path: Path, rows: list[dict], title: str, info: dict) -> None:
    from alignment.data import write_card, write_rows

    write_rows(rows, path)
    write_card(path, title, info)


def _read(path: Path) -> list[dict]:
    from alignment.data import read_rows

    return read_rows(path)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


def _mean(xs: list) -> float | None:
    return sum(map(float, xs)) / len(xs) if xs else None


def _ci(d: dict) -> str:
    ci = d.get("ci95")
    diff = f"{100 * d['difference']:+.1f} points"
    return diff if not ci else f"{diff}, 95% CI [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _summary(state: dict, rounds: list[dict]) -> dict:
    return {**state, "rounds": rounds}


def _table(rounds: list[dict]) -> str:
    lines = ["", f"{'round':>5} {'pairs':>6} {'follow base':>12} {'follow trained':>15} "
             f"{'difference [95% CI]':>26} {'factual b/t':>12} {'win rate':>9}"]
    for r in rounds:
        f = r["following"]["follow_rate"]
        fa = r.get("factual") and r["factual"]["accuracy"]
        fact = f"{100 * fa['base']:.0f}/{100 * fa['policy']:.0f}%" if fa else "-"
        win = "-" if r.get("win_rate") is None else f"{r['win_rate']:.3f}"
        ci = f["ci95"] or [f["difference"]] * 2
        lines.append(f"{r['round']:>5} {r['pairs']:>6} {100 * f['base']:>11.1f}% "
                     f"{100 * f['policy']:>14.1f}% {100 * f['difference']:>+9.1f} "
                     f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] {fact:>12} {win:>9}")
    return "\n".join(lines)


def _plot(path: Path, rounds: list[dict]) -> None:
    """Held-out follow rate per round (interval of the difference around the trained
    rate), with the base's and the factual accuracy beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [0] + [r["round"] for r in rounds]
    f = [r["following"]["follow_rate"] for r in rounds]
    trained = [f[0]["base"]] + [d["policy"] for d in f]
    err_low = [0.0] + [d["difference"] - (d["ci95"] or [d["difference"]] * 2)[0] for d in f]
    err_high = [0.0] + [(d["ci95"] or [d["difference"]] * 2)[1] - d["difference"] for d in f]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(xs, [100 * t for t in trained], yerr=[[100 * e for e in err_low],
                                                      [100 * e for e in err_high]],
                marker="o", capsize=4, label="trained: follow rate (95% CI of the gain)")
    ax.axhline(100 * f[0]["base"], color="grey", linestyle="--", label="base: follow rate")
    facts = [r.get("factual") for r in rounds]
    if all(facts):
        acc = [facts[0]["accuracy"]["base"]] + [x["accuracy"]["policy"] for x in facts]
        ax.plot(xs, [100 * a for a in acc], marker="s", color="tab:green",
                label="factual accuracy")
    ax.set_xlabel("round (0 = base)")
    ax.set_ylabel("% of held-out prompts")
    ax.set_xticks(xs)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("align loop: held-out figures per round")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
