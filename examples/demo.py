"""The whole loop at small scale, on the bundled model, offline.

seed prompts -> teacher responses (distilabel) -> AI judge scores -> preference pairs
-> `align dpo` (LoRA on the student) -> `align eval` (trained policy vs base, held out)

Run it with `make demo`, or `python examples/demo.py --help` for the knobs. Each stage
is the same command a user would type; the script prints each command before running it
and where every artefact lands.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/demo", help="folder for every artefact")
    ap.add_argument("--teacher", default="smollm2", help="model writing the responses")
    ap.add_argument("--judge", default="smollm2", help="model scoring them (rating-token "
                    "probabilities); `qwen-judge` after `make judge-model` is stronger")
    ap.add_argument("--student", default="smollm2", help="model trained with DPO")
    ap.add_argument("--num-instructions", type=int, default=20)
    ap.add_argument("--num-responses", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--heldout-fraction", type=float, default=0.25,
                    help="fraction of prompts (not pairs) kept out of training")
    ap.add_argument("--margin", type=float, default=0.25,
                    help="smallest judge-score gap that makes a pair")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--max-length", type=int, default=192,
                    help="prompt + completion tokens per DPO example")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--win-rate", action=argparse.BooleanOptionalAction, default=True,
                    help="also judge trained-vs-base generations on held-out prompts")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.time()


def run_align(args: list[str]) -> None:
    """Run an `align` command in a child process, exactly as a user would type it."""
    print("$ align " + " ".join(shlex.quote(a) for a in args), flush=True)
    cmd = [sys.executable, "-m", "alignment.cli", *args]
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `align {args[0]}` failed with exit code {proc.returncode}")


def split_by_prompt(pairs: list[dict], fraction: float, seed: int) -> tuple[list, list]:
    """Hold out whole prompts so no held-out prompt was seen in training."""
    from alignment.data import prompt_id

    ids = sorted({prompt_id(p["prompt"]) for p in pairs})
    random.Random(seed).shuffle(ids)
    held = set(ids[: max(1, round(len(ids) * fraction))])
    train = [p for p in pairs if prompt_id(p["prompt"]) not in held]
    test = [p for p in pairs if prompt_id(p["prompt"]) in held]
    return train, test


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from alignment.data import ranked_to_pairs, read_rows, write_card, write_rows
    from alignment.models import BUNDLED, resolve_model
    from pipelines.preference import run_preference_pipeline

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    t = step("1/5 models")
    for spec in dict.fromkeys([args.teacher, args.judge, args.student]):
        path = resolve_model(spec)
        print(f"{spec}: {path}" + (" (bundled)" if spec in BUNDLED else ""))
    print(f"({time.time() - t:.0f}s)")

    t = step("2/5 generate responses and judge them (distilabel)")
    ranked_path = run_preference_pipeline(
        output=str(out / "ranked.jsonl"), teacher=args.teacher, judge=args.judge,
        num_instructions=args.num_instructions, num_responses=args.num_responses,
        max_new_tokens=args.max_new_tokens, seed=args.seed)
    ranked = read_rows(ranked_path)
    print(f"({time.time() - t:.0f}s)")

    t = step("3/5 preference pairs")
    pairs, counts = ranked_to_pairs(ranked, "all", margin=args.margin, seed=args.seed)
    if len(pairs) < 4:
        raise SystemExit(f"demo: only {len(pairs)} pairs had a judge-score gap of at least "
                         f"{args.margin}; raise --num-instructions or lower --margin")
    train, heldout = split_by_prompt(pairs, args.heldout_fraction, args.seed)
    train_path = write_rows(train, out / "pairs_train.jsonl")
    heldout_path = write_rows(heldout, out / "pairs_heldout.jsonl")
    for path, rows in ((train_path, train), (heldout_path, heldout)):
        write_card(path, "align demo preference pairs", {
            "rows": len(rows), "source": str(ranked_path), "strategy": "all",
            "margin": args.margin, "pairing_counts": counts, "judge": args.judge})
    print(f"{len(pairs)} pairs from {len(ranked)} prompts: {len(train)} train, "
          f"{len(heldout)} held out (by prompt); counts {counts}")
    print(f"({time.time() - t:.0f}s)")

    t = step("4/5 align dpo (LoRA on the student)")
    run_dir = out / "dpo"
    # evaluation happens once, in step 5, on the held-out prompts
    run_align(["dpo", "--dataset", str(train_path), "--eval_split", "0",
               "--eval_strategy", "no", "--save_strategy", "no",
               "--model", args.student, "--output_dir", str(run_dir),
               "--max_length", str(args.max_length),
               "--per_device_train_batch_size", str(args.batch_size),
               # one optimizer step per batch: with a few dozen pairs, more updates count
               "--gradient_accumulation_steps", "1",
               "--num_train_epochs", str(args.epochs), "--max_steps", str(args.max_steps),
               "--logging_steps", "1", "--seed", str(args.seed)])
    print(f"({time.time() - t:.0f}s)")

    t = step("5/5 align eval (trained policy vs base on held-out pairs)")
    eval_path = out / "eval.json"
    judged = (["--judge", args.judge, "--max_new_tokens", "48", "--win_rate_prompts", "8"]
              if args.win_rate else ["--no_win_rate"])
    run_align(["eval", "--model", str(run_dir), "--dataset", str(heldout_path),
               "--output", str(eval_path), *judged])
    print(f"({time.time() - t:.0f}s)")

    result = json.loads(eval_path.read_text())
    print(f"\n=== done in {time.time() - started:.0f}s ===")
    artefacts = {
        "ranked responses + judge scores": ranked_path,
        "training pairs": train_path, "held-out pairs": heldout_path,
        "LoRA adapter": run_dir, "training curves": run_dir / "training_curves.png",
        "model card": run_dir / "README.md", "metrics": run_dir / "metrics.json",
        "evaluation": eval_path,
    }
    for what, path in artefacts.items():
        print(f"{what:<32} {path}")
    (out / "summary.json").write_text(json.dumps(
        {"artefacts": {k: str(v) for k, v in artefacts.items()}, "eval": result,
         "seconds": round(time.time() - started, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
