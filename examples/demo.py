"""The whole loop at small scale, on the bundled model, offline: a model that gets better
at following instructions, measured on prompts it never trained on.

prompts with checkable constraints (split by task) -> rounds of: the policy samples
answers -> verifiers score them -> best vs worst pairs -> `align dpo` from the current
adapter -> held-out evaluation (follow rate with a 95% interval, factual questions,
judged win rate in both orders), against the base measured the same way

Run it with `make demo`, or `python examples/demo.py --help` for the knobs. Each stage
is the command a user would type; the script prints it before running it and where
every artefact lands.
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
# every constraint template of `align generate constraints` except the arithmetic problems
FORMAT_CONSTRAINTS = ("lowercase", "uppercase", "max_words", "one_sentence", "max_sentences",
                      "starts_with", "ends_with", "no_commas", "keyword", "bullets", "quoted",
                      "json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/demo", help="folder for every artefact")
    ap.add_argument("--student", default="smollm2", help="the base policy trained by DPO")
    ap.add_argument("--judge", default=None,
                    help="AI judge: scores the candidates beside the verifiers and judges the "
                         "held-out win rate (e.g. qwen-judge after `make judge-model`); "
                         "default: verifiers score, the bundled smollm2 judges the win rate")
    ap.add_argument("--constraints", nargs="+", default=list(FORMAT_CONSTRAINTS), metavar="ID",
                    help="constraint types of the prompts (default: the twelve format "
                         "constraints; add final_answer for the arithmetic word problems, "
                         "which a 135M model does not learn in two short rounds)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompts-per-round", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--keep-truncated", action="store_true",
                    help="also pair answers the token limit cut off")
    ap.add_argument("--dpo", default="", help="extra `align dpo` flags, as one string")
    ap.add_argument("--win-rate", action=argparse.BooleanOptionalAction, default=True,
                    help="also judge trained-vs-base answers on the held-out prompts")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.time()


def run_align(args: list[str]) -> None:
    """Run an `align` command in a child process, exactly as a user would type it."""
    print("$ align " + " ".join(shlex.quote(a) for a in args), flush=True)
    proc = subprocess.run([sys.executable, "-m", "alignment.cli", *args], cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `align {args[0]}` failed with exit code {proc.returncode}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from alignment.following import format_following
    from alignment.models import BUNDLED, resolve_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    t = step("1/3 models")
    for spec in dict.fromkeys([args.student] + ([args.judge] if args.judge else [])):
        print(f"{spec}: {resolve_model(spec)}" + (" (bundled)" if spec in BUNDLED else ""))
    print(f"({time.time() - t:.0f}s)")

    t = step("2/3 prompts with checkable constraints, split by task")
    prompts = out / "constraints"
    run_align(["generate", "constraints", "-o", str(prompts), "--seed", str(args.seed),
               "--only", *args.constraints])
    print(f"({time.time() - t:.0f}s)")

    t = step(f"3/3 {args.rounds} on-policy round(s): sample, verify, pair, DPO, evaluate")
    loop = out / "loop"
    judge = ["--judge", args.judge] if args.judge else []
    win = (["--win-rate-judge", args.judge or "smollm2"] if args.win_rate
           else ["--win-rate-judge", "none"])
    run_align(["loop", "--prompts", str(prompts / "train.jsonl"),
               "--heldout", str(prompts / "heldout.jsonl"), "--model", args.student,
               "--output", str(loop), "--rounds", str(args.rounds),
               "--prompts-per-round", str(args.prompts_per_round),
               "--candidates", str(args.candidates), "--max-new-tokens", str(args.max_new_tokens),
               "--seed", str(args.seed), *judge, *win,
               *(["--keep-truncated"] if args.keep_truncated else []), *(["--dpo", args.dpo] if args.dpo else [])])
    print(f"({time.time() - t:.0f}s)")

    summary = json.loads((loop / "summary.json").read_text())
    last = summary["rounds"][-1]
    print(f"\n=== done in {time.time() - started:.0f}s: base vs the round-{last['round']} "
          "policy, held-out prompts ===")
    print("\n".join(format_following(last["following"], last.get("factual"))))
    if last.get("judged"):
        j = last["judged"]
        print(f"  judged win rate (both orders, {j['judge']}): {j['win_rate']:.3f} "
              f"({j['wins']}W {j['losses']}L {j['ties']}T of {j['judged']})")
    artefacts = {"prompts (train / held out)": prompts, "rounds (data, adapters, figures)": loop,
                 "figures per round": loop / "summary.json", "plot": loop / "loop.png",
                 "final adapter": loop / f"round-{last['round']}" / "dpo"}
    for what, path in artefacts.items():
        print(f"{what:<34} {path}")
    (out / "summary.json").write_text(json.dumps(
        {"artefacts": {k: str(v) for k, v in artefacts.items()}, "final_round": last,
         "seconds": round(time.time() - started, 1)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
