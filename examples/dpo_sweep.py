"""A measured sweep of `align dpo`'s LoRA settings on on-policy constraint pairs.

    python examples/dpo_sweep.py --loop runs/demo/loop [--configs NAME ...] [--out runs/sweep]

Takes the first round of an `align loop` run (its ``pairs.jsonl``, made from the base
policy's own answers, and the base's held-out answers in ``base_answers.json``), trains
one adapter per setting with `align dpo` on the same pairs, and measures each on the
held-out prompts exactly as the loop does: greedy answers, the follow rate against the
base's with a paired bootstrap 95% interval, and the factual questions. It prints a
markdown table (the one in the README) and writes ``sweep.json``.

The settings compared are in ``CONFIGS`` below: the learning rate, schedule, epochs,
LoRA target modules and DPO beta that `align dpo` chooses its defaults from.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def _flags(lr: str, epochs: int, beta: float, modules: str | None, sft: bool) -> str:
    flags = f"--learning_rate {lr} --num_train_epochs {epochs} --beta {beta}"
    flags += f" --lora_target_modules {modules}" if modules else " --lora_target_modules q_proj v_proj"
    return flags + (" --loss_type sigmoid sft --loss_weights 1 1" if sft else " --loss_type sigmoid")


# name -> `align dpo` flags; every setting the sweep varies is spelled out, so the table
# stays reproducible whatever `align dpo`'s defaults are
CONFIGS: dict[str, str] = {
    "lr5e-5-1ep-b0.1-qv": _flags("5e-5", 1, 0.1, None, False),
    "lr5e-4-2ep-b0.1-qv": _flags("5e-4", 2, 0.1, None, False),
    "lr5e-4-2ep-b0.5-qv": _flags("5e-4", 2, 0.5, None, False),
    "lr5e-4-2ep-b0.5-all": _flags("5e-4", 2, 0.5, "all-linear", False),
    "lr5e-4-2ep-b0.5-all-sft": _flags("5e-4", 2, 0.5, "all-linear", True),
    "lr1e-3-2ep-b0.5-all-sft": _flags("1e-3", 2, 0.5, "all-linear", True),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", required=True, help="an `align loop` output folder (round 1 is used)")
    ap.add_argument("--heldout", help="held-out prompts (default: the loop's own)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--out", default="runs/sweep")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from alignment import following
    from alignment.engine import Generation
    from alignment.evaluate import evaluate_prompts
    from alignment.recipes.loop import _load

    loop = Path(args.loop)
    settings = json.loads((loop / "loop.json").read_text())["settings"]
    heldout = following.read_checked_prompts(args.heldout or settings["heldout"])
    factual = following.read_factual(following.FACTUAL)
    cached = {k: [Generation(**g) for g in v]
              for k, v in json.loads((loop / "base_answers.json").read_text()).items()}
    pairs = loop / "round-1" / "pairs.jsonl"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    if (out / "sweep.json").exists():
        results = json.loads((out / "sweep.json").read_text())
    for name in args.configs:
        if name in results:
            continue
        run_dir = out / name
        cmd = ["dpo", "--dataset", str(pairs), "--model", settings["base_path"],
               "--output_dir", str(run_dir), "--eval_split", "0", "--eval_strategy", "no",
               "--save_strategy", "no", "--logging_steps", "1", "--seed", str(args.seed),
               *shlex.split(CONFIGS[name])]
        print("$ align " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        started = time.time()
        subprocess.run([sys.executable, "-m", "alignment.cli", *cmd], check=True,
                       stdout=subprocess.DEVNULL)
        trained = time.time() - started
        model, tokenizer = _load(None, run_dir)
        fig = evaluate_prompts(model, None, tokenizer, heldout, factual, judge=None,
                               max_new_tokens=settings["max_new_tokens"], seed=args.seed,
                               base_answers=cached)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        results[name] = {"flags": CONFIGS[name], "train_seconds": round(trained, 1),
                         "steps": metrics["global_step"],
                         "loss_first": metrics.get("train_loss_first"),
                         "loss_mean": metrics.get("train_loss_mean"),
                         "following": fig["following"], "factual": fig["factual"]}
        (out / "sweep.json").write_text(json.dumps(results, indent=2))
        f = fig["following"]["follow_rate"]
        print(f"{name}: follow {100 * f['base']:.1f}% -> {100 * f['policy']:.1f}% "
              f"({100 * f['difference']:+.1f}) in {trained:.0f}s", flush=True)
    print(table(results, len(heldout), pairs))
    return 0


def table(results: dict, n: int, pairs: Path) -> str:
    lines = [f"On-policy pairs {pairs} ; {n} held-out prompts; points = percentage points.", "",
             "| setting (`align dpo` flags) | steps | train s | loss first → mean | "
             "held-out follow, base → trained | difference [95% CI] | factual, base → trained |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        f, a = r["following"]["follow_rate"], r["factual"]["accuracy"]
        ci = f["ci95"] or [f["difference"]] * 2
        lines.append(
            f"| `{r['flags']}` | {r['steps']} | {r['train_seconds']:.0f} | "
            f"{r['loss_first']:.3f} → {r['loss_mean']:.3f} | {100 * f['base']:.1f}% → "
            f"{100 * f['policy']:.1f}% | {100 * f['difference']:+.1f} [{100 * ci[0]:+.1f}, "
            f"{100 * ci[1]:+.1f}] | {100 * a['base']:.0f}% → {100 * a['policy']:.0f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
