"""The reversal curse and its cure, reproduced with align's own commands, offline.

A model fine-tuned on "A is B" answers "Who is A?" but not "Who is B?" (Berglund et al.,
2023, "The Reversal Curse"). This script teaches the bundled SmolLM2-135M-Instruct
fictitious facts (pipelines/data/fictitious_facts.jsonl: invented people, unique objects,
so the base model cannot know them) and measures both directions:

1. `align generate reversal` turns each fact into Q/A rows in both directions. By default
   the reversals are the pipeline's template ("B is A."; `--dry-run`'s deterministic
   teacher writes exactly that), so the run is reproducible; `--teacher smollm2` has the
   bundled model write them (greedy), with the pipeline's check and template fallback.
2. Condition A, forward only: `align sft` (LoRA) on "Who is A?" -> "A is B." rows.
   Condition B, the cure: the same rows plus the reversed ones, "Who is B?" -> "B is A.".
3. Every model (the base, A, B) answers multiple-choice questions, scored by likelihood
   (``alignment.likelihood``): forward, "Who is A?" with the reply begun as "A is" and the
   right B among distractor Bs of other facts; reverse, "Who is B?" with "B is" and the
   right name among other facts' names. The pick is the candidate whose tokens have the
   highest total log-probability; accuracy is printed against chance (1 / candidates)
   with a Wilson 95% interval, per training seed.

The reverse questions of condition B are rows it was trained on: the cure is data
augmentation, not the model learning to reverse by itself.

    python examples/reversal_curse.py                         # 40 facts, 1 seed
    python examples/reversal_curse.py --seeds 0 1 2           # three training seeds
    python examples/reversal_curse.py --num-facts 8 --epochs 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alignment.likelihood import Choice  # noqa: E402

FACTS = ROOT / "pipelines" / "data" / "fictitious_facts.jsonl"
FORWARD_KINDS = {"qa": ["qa_forward"], "all": ["statement", "qa_forward"]}
REVERSE_KINDS = {"qa": ["qa_reverse"], "all": ["statement_reversed", "qa_reverse"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/reversal_curse", help="folder for every artefact")
    ap.add_argument("--facts", default=str(FACTS), help="JSONL of {\"fact\": \"A is B\"}")
    ap.add_argument("--num-facts", type=int, default=None, help="the first N facts (default: all)")
    ap.add_argument("--model", default="smollm2", help="the model fine-tuned and scored")
    ap.add_argument("--teacher", default=None,
                    help="model writing the reversals (default: the pipeline's template)")
    ap.add_argument("--rows", choices=sorted(FORWARD_KINDS), default="qa",
                    help="qa: the Q/A rows only; all: also the 'Tell me a fact about' rows")
    ap.add_argument("--epochs", type=float, default=5.0)
    ap.add_argument("--learning-rate", type=float, default=3e-3,
                    help="peak of a linear decay to 0")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    ap.add_argument("--candidates", type=int, default=8,
                    help="answers per question: the right one and distractors")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads here and OMP_NUM_THREADS for the align commands")
    return ap.parse_args(argv)


def run_align(args: list[str], env: dict) -> None:
    """Run an `align` command in a child process, exactly as a user would type it."""
    print("$ align " + " ".join(shlex.quote(a) for a in args), flush=True)
    proc = subprocess.run([sys.executable, "-m", "alignment.cli", *args], cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"reversal_curse: `align {args[0]}` failed with exit code "
                         f"{proc.returncode}")


def questions(facts: list[dict], candidates: int, seed: int) -> tuple[list[Choice], list[Choice]]:
    """Forward and reverse multiple-choice questions, one of each per fact; distractors
    are other facts' objects (forward) and names (reverse), the right answer's slot is
    shuffled. ``facts``: ``{"a", "verb", "b"}`` as ``pipelines.reversal.parse_fact`` gives."""
    def cap(text: str) -> str:
        return text[:1].upper() + text[1:]

    rng = random.Random(seed)
    forward, reverse = [], []
    for i, f in enumerate(facts):
        others = [j for j in range(len(facts)) if j != i]
        picked = [i] + rng.sample(others, min(candidates - 1, len(others)))
        rng.shuffle(picked)
        forward.append(Choice([{"role": "user", "content": f"Who {f['verb']} {f['a']}?"}],
                              [f" {facts[j]['b']}." for j in picked], picked.index(i),
                              f"{cap(f['a'])} {f['verb']}"))
        reverse.append(Choice([{"role": "user", "content": f"Who {f['verb']} {f['b']}?"}],
                              [f" {facts[j]['a']}." for j in picked], picked.index(i),
                              f"{cap(f['b'])} {f['verb']}"))
    return forward, reverse


def score(model_dir: str, forward: list[Choice], reverse: list[Choice]) -> dict:
    """Forward and reverse accuracy of one model (a model, or a LoRA run folder)."""
    from alignment import likelihood
    from alignment.evaluate import load_policy

    if (Path(model_dir) / "adapter_config.json").exists():
        model, _, tokenizer, _ = load_policy(model_dir, None)
        model = model.merge_and_unload()  # one matmul per layer, not base + adapter
    else:
        from transformers import AutoModelForCausalLM

        from alignment.models import resolve_model
        from alignment.models import load_tokenizer

        path = resolve_model(model_dir)
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path).eval(), load_tokenizer(path)
    return {name: likelihood.accuracy(qs, likelihood.picks(likelihood.rank(model, tokenizer, qs)))
            for name, qs in (("forward", forward), ("reverse", reverse))}


def write_rows(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows))
    return path


def train(dataset: Path, out: Path, args: argparse.Namespace, seed: int, env: dict) -> None:
    run_align(["sft", "--model", args.model, "--dataset", str(dataset), "--output_dir", str(out),
               "--eval_split", "0", "--eval_strategy", "no", "--save_strategy", "no",
               "--num_train_epochs", str(args.epochs), "--learning_rate", str(args.learning_rate),
               "--per_device_train_batch_size", str(args.batch_size),
               # one update per batch: with a few dozen rows, more updates count
               "--gradient_accumulation_steps", "1", "--lr_scheduler_type", "linear",
               "--max_length", "128", "--logging_steps", "5", "--seed", str(seed)], env)


def table(figures: dict) -> str:
    def cell(d: dict) -> str:
        lo, hi = d["ci95"]
        return f"{d['accuracy']:.2f} [{lo:.2f}, {hi:.2f}]"
    lines = [f"{'model':<22} {'seed':>4}  {'forward':<18} {'reverse':<18}"]
    for row in figures["models"]:
        lines.append(f"{row['model']:<22} {row['seed'] if row['seed'] is not None else '-':>4}  "
                     f"{cell(row['forward']):<18} {cell(row['reverse']):<18}")
    for name, mean in figures["mean_over_seeds"].items():
        lines.append(f"{name:<22} {'mean':>4}  {mean['forward']:<18.2f} {mean['reverse']:<18.2f}")
    lines.append(f"chance {figures['chance']:.3f} ({figures['candidates']} candidates, "
                 f"{figures['facts']} facts; accuracy [Wilson 95%])")
    return "\n".join(lines)


def mean_over_seeds(models: list[dict]) -> dict:
    """Each trained condition's accuracies averaged over its seeds (with two or more)."""
    out = {}
    for name in dict.fromkeys(m["model"] for m in models if m["seed"] is not None):
        runs = [m for m in models if m["model"] == name]
        if len(runs) > 1:
            out[name] = {d: sum(m[d]["accuracy"] for m in runs) / len(runs)
                         for d in ("forward", "reverse")}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from alignment.data import read_card
    from pipelines.reversal import parse_fact, read_facts

    env = dict(os.environ)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        env["OMP_NUM_THREADS"] = str(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started, seconds = time.time(), {}

    facts = read_facts(args.facts)[:args.num_facts]
    facts_path = out / "facts.jsonl"
    facts_path.write_text("".join(json.dumps(f) + "\n" for f in facts))

    t = time.time()
    teacher = (["--model", args.teacher, "--temperature", "0", "--max-new-tokens", "48"]
               if args.teacher else ["--dry-run"])
    run_align(["generate", "reversal", "--facts", str(facts_path), "-o",
               str(out / "reversal.jsonl"), "--fresh", *teacher], env)
    rows = [json.loads(line) for line in (out / "reversal.jsonl").read_text().splitlines()]
    card = {k: v for k, v in read_card(out / "reversal.jsonl").items()
            if k.startswith("reversal_")}  # the refused reversals, counted
    forward_rows = [r for r in rows if r["kind"] in FORWARD_KINDS[args.rows]]
    reverse_rows = [r for r in rows if r["kind"] in REVERSE_KINDS[args.rows]]
    datasets = {"forward only (A)": write_rows(forward_rows, out / "forward.jsonl"),
                "with reversals (B)": write_rows(forward_rows + reverse_rows,
                                                 out / "both.jsonl")}
    seconds["generate"] = round(time.time() - t, 1)

    forward, reverse = questions([parse_fact(f["fact"]) for f in facts], args.candidates, 0)
    t = time.time()
    models = [{"model": "base", "seed": None, **score(args.model, forward, reverse)}]
    seconds["score"] = round(time.time() - t, 1)
    seconds["train"] = 0.0
    for seed in args.seeds:
        for name, dataset in datasets.items():
            run_dir = out / f"{'forward' if 'A' in name else 'both'}-seed{seed}"
            t = time.time()
            train(dataset, run_dir, args, seed, env)
            seconds["train"] += round(time.time() - t, 1)
            t = time.time()
            models.append({"model": name, "seed": seed, **score(str(run_dir), forward, reverse)})
            seconds["score"] += round(time.time() - t, 1)
            print(f"{name}, seed {seed}: forward {models[-1]['forward']['accuracy']:.2f}, "
                  f"reverse {models[-1]['reverse']['accuracy']:.2f}", flush=True)

    seconds["total"] = round(time.time() - started, 1)
    figures = {"facts": len(facts), "candidates": args.candidates,
               "chance": models[0]["forward"]["chance"],
               "reversals": "teacher " + args.teacher if args.teacher else "template",
               "reversal_counts": card,
               "training": {"rows": args.rows, "forward_rows": len(forward_rows),
                            "reverse_rows": len(reverse_rows), "epochs": args.epochs,
                            "learning_rate": args.learning_rate, "batch_size": args.batch_size,
                            "seeds": args.seeds, "model": args.model},
               "models": models, "mean_over_seeds": mean_over_seeds(models),
               "seconds": seconds}
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    print("\n" + table(figures))
    print(f"\nfigures: {out / 'figures.json'} ({seconds['total']:.0f} s: {seconds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
