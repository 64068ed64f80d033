"""What fine-tuning teaches, measured with align's own commands on fictitious facts.

Two questions about the reversal curse (see examples/reversal_curse.py, whose facts,
questions, scoring and training settings this script reuses):

1. **Does reversal generalise?** The 40 facts are split in two groups by position (even:
   group 1, odd: group 2). Condition G trains every fact forward ("Who is A?" -> "A is
   B.") and only group 1 in reverse too ("Who is B?" -> "B is A."); condition A, the
   control, trains every fact forward only. If training on A=B and B=A for some facts
   taught the model to answer B->A in general, G's reverse accuracy on group 2 (never
   seen reversed) would beat A's on the same questions. Both conditions, per seed, in one
   run; the paired difference is reported per seed and over seeds.
2. **Continued pre-training vs SFT**: condition P reads prose about each fact (three
   sentences, each naming A before B, as a document; `align pretrain` with the same
   LoRA settings and epochs) instead of the Q/A chats of A. Both are asked the same chat
   questions, forward and reverse.

Every accuracy comes with its Wilson 95% interval; chance is 1 / candidates.

    python examples/what_training_teaches.py --seeds 0 1 2
    python examples/what_training_teaches.py --seeds 0 --no-pretrain --num-facts 8 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for folder in (ROOT, HERE):  # run as a script from a checkout: the packages and the example
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import reversal_curse as rc  # noqa: E402

PROSE = ("{A} {verb} {b}.",
         "Everyone who follows the news knows that {a} {verb} {b}.",
         "As the records show, {a} {verb} {b}, and few facts are better documented.")


def prose(fact: dict) -> str:
    """One document about a fact, every sentence naming A before B (the forward order)."""
    cap = fact["a"][:1].upper() + fact["a"][1:]
    return " ".join(t.format(A=cap, a=fact["a"], verb=fact["verb"], b=fact["b"])
                    for t in PROSE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/what_training_teaches")
    ap.add_argument("--facts", default=str(rc.FACTS))
    ap.add_argument("--num-facts", type=int, default=None)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--epochs", type=float, default=5.0)
    ap.add_argument("--learning-rate", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--no-pretrain", action="store_true",
                    help="skip condition P (continued pre-training on prose)")
    ap.add_argument("--pretrain-seeds", type=int, nargs="+", default=None,
                    help="seeds of condition P (default: the first of --seeds)")
    ap.add_argument("--no-base", action="store_true", help="do not score the base model")
    return ap.parse_args(argv)


def pretrain(documents: Path, out: Path, args: argparse.Namespace, seed: int, env: dict):
    rc.run_align(["pretrain", "--model", args.model, "--dataset", str(documents),
                  "--output_dir", str(out), "--eval_split", "0", "--eval_strategy", "no",
                  "--save_strategy", "no", "--packing", "false",
                  "--num_train_epochs", str(args.epochs),
                  "--learning_rate", str(args.learning_rate),
                  "--per_device_train_batch_size", str(args.batch_size),
                  "--gradient_accumulation_steps", "1", "--lr_scheduler_type", "linear",
                  "--max_length", "128", "--logging_steps", "5", "--seed", str(seed)], env)


def by_group(qs: list, picks: list[int], groups: dict[str, list[int]]) -> dict:
    from alignment import likelihood

    return {g: likelihood.accuracy([qs[i] for i in idx], [picks[i] for i in idx])
            for g, idx in groups.items()}


def score(model_dir: str, forward: list, reverse: list, groups: dict,
          reverse_within: list | None = None) -> dict:
    """Forward and reverse accuracy, over all facts and per group; with
    ``reverse_within``, also group 2's reverse questions among group 2's names only."""
    from alignment import likelihood
    from alignment.evaluate import load_policy

    if (Path(model_dir) / "adapter_config.json").exists():
        model, _, tokenizer, _ = load_policy(model_dir, None)
        model = model.merge_and_unload()
    else:
        from transformers import AutoModelForCausalLM

        from alignment.models import resolve_model
        from alignment.models import load_tokenizer

        path = resolve_model(model_dir)
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path).eval(), load_tokenizer(path)
    out = {}
    for name, qs in (("forward", forward), ("reverse", reverse)):
        picks = likelihood.picks(likelihood.rank(model, tokenizer, qs))
        out[name] = by_group(qs, picks, {"all": list(range(len(qs))), **groups})
        out[name]["picks"] = picks
    if reverse_within:
        picks = likelihood.picks(likelihood.rank(model, tokenizer, reverse_within))
        out["reverse"]["group_2_within"] = likelihood.accuracy(reverse_within, picks)
    return out


def cell(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{d['accuracy']:.2f} [{lo:.2f}, {hi:.2f}]"


def table(models: list[dict]) -> str:
    head = (f"{'model':<28} {'seed':>4}  {'forward':<18} {'reverse, group 1':<18} "
            f"{'reverse, group 2':<18} {'group 2, within':<18}")
    lines = [head]
    for m in models:
        seed = "-" if m["seed"] is None else m["seed"]
        lines.append(f"{m['model']:<28} {seed:>4}  {cell(m['forward']['all']):<18} "
                     f"{cell(m['reverse']['group_1']):<18} {cell(m['reverse']['group_2']):<18} "
                     f"{cell(m['reverse']['group_2_within']):<18}")
    return "\n".join(lines)


def paired(models: list[dict], seeds: list[int], key: str = "group_2") -> dict:
    """Per seed, G's reverse accuracy on group 2 (``key``: ``group_2`` among every fact's
    names, ``group_2_within`` among group 2's) minus A's, and the mean and range."""
    diffs = {}
    for s in seeds:
        a = next(m for m in models if m["model"].startswith("forward only") and m["seed"] == s)
        g = next(m for m in models if m["model"].startswith("group 1 reversed") and m["seed"] == s)
        diffs[s] = g["reverse"][key]["accuracy"] - a["reverse"][key]["accuracy"]
    values = list(diffs.values())
    return {"per_seed": diffs, "mean": sum(values) / len(values),
            "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipelines.reversal import parse_fact, read_facts

    env = dict(os.environ)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started, seconds = time.time(), {"train": 0.0, "score": 0.0}

    facts = read_facts(args.facts)[:args.num_facts]
    parsed = [parse_fact(f["fact"]) for f in facts]
    facts_path = out / "facts.jsonl"
    facts_path.write_text("".join(json.dumps(f) + "\n" for f in facts))
    rc.run_align(["generate", "reversal", "--facts", str(facts_path), "-o",
                  str(out / "reversal.jsonl"), "--fresh", "--dry-run"], env)
    rows = [json.loads(line) for line in (out / "reversal.jsonl").read_text().splitlines()]
    index = {f"{p['a']} {p['verb']} {p['b']}".rstrip("."): i for i, p in enumerate(parsed)}

    def fact_of(row: dict) -> int:
        return index[row["fact"].rstrip(".")]

    group_1 = [i for i in range(len(facts)) if i % 2 == 0]
    group_2 = [i for i in range(len(facts)) if i % 2 == 1]
    groups = {"group_1": group_1, "group_2": group_2}
    forward_rows = [r for r in rows if r["kind"] == "qa_forward"]
    reverse_1 = [r for r in rows if r["kind"] == "qa_reverse" and fact_of(r) in set(group_1)]
    datasets = {"forward only (A)": rc.write_rows(forward_rows, out / "forward.jsonl"),
                "group 1 reversed too (G)": rc.write_rows(forward_rows + reverse_1,
                                                          out / "group1_reversed.jsonl")}
    documents = out / "prose.jsonl"
    documents.write_text("".join(json.dumps({"text": prose(p)}) + "\n" for p in parsed))

    forward, reverse = rc.questions(parsed, args.candidates, 0)
    # group 2's reverse questions again, their distractors group 2's names only: a model
    # that learned group 1's names as answers to "Who is B?" cannot pick those here
    _, within = rc.questions([parsed[i] for i in group_2], args.candidates, 0)
    models = []
    if not args.no_base:
        t = time.time()
        models.append({"model": "base", "seed": None,
                       **score(args.model, forward, reverse, groups, within)})
        seconds["score"] += time.time() - t
    pretrain_seeds = [] if args.no_pretrain else (args.pretrain_seeds or args.seeds[:1])
    for seed in args.seeds:
        jobs = [(name, path, "sft") for name, path in datasets.items()]
        if seed in pretrain_seeds:
            jobs.append(("prose, align pretrain (P)", documents, "pretrain"))
        for name, dataset, kind in jobs:
            run_dir = out / f"{name.split('(')[1][0]}-seed{seed}"
            t = time.time()
            if not (run_dir / "adapter_config.json").exists():  # a rerun only scores again
                (rc.train if kind == "sft" else pretrain)(dataset, run_dir, args, seed, env)
            seconds["train"] += time.time() - t
            t = time.time()
            models.append({"model": name, "seed": seed,
                           **score(str(run_dir), forward, reverse, groups, within)})
            seconds["score"] += time.time() - t
            m = models[-1]
            print(f"{name}, seed {seed}: forward {m['forward']['all']['accuracy']:.2f}, "
                  f"reverse group 1 {m['reverse']['group_1']['accuracy']:.2f}, "
                  f"group 2 {m['reverse']['group_2']['accuracy']:.2f}", flush=True)

    seconds = {k: round(v, 1) for k, v in seconds.items()}
    seconds["total"] = round(time.time() - started, 1)
    figures = {"facts": len(facts), "candidates": args.candidates,
               "chance": 1 / min(args.candidates, len(facts)),
               "groups": {"group_1": len(group_1), "group_2": len(group_2)},
               "training": {"forward_rows": len(forward_rows),
                            "group_1_reverse_rows": len(reverse_1),
                            "prose_documents": len(parsed), "epochs": args.epochs,
                            "learning_rate": args.learning_rate,
                            "batch_size": args.batch_size, "model": args.model,
                            "seeds": args.seeds, "pretrain_seeds": pretrain_seeds},
               "models": models, "seconds": seconds}
    if any(m["model"].startswith("forward only") for m in models):
        figures["group_2_reverse_gain"] = paired(models, args.seeds)
        figures["group_2_reverse_gain_within"] = paired(models, args.seeds, "group_2_within")
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    print("\n" + table(models))
    if "group_2_reverse_gain" in figures:
        gain = figures["group_2_reverse_gain"]
        print(f"\nG minus A, reverse accuracy on group 2 (never trained reversed): "
              f"mean {gain['mean']:+.3f}, range [{gain['min']:+.3f}, {gain['max']:+.3f}] "
              f"over seeds {args.seeds}")
        gain = figures["group_2_reverse_gain_within"]
        print(f"the same among group 2's names only: mean {gain['mean']:+.3f}, range "
              f"[{gain['min']:+.3f}, {gain['max']:+.3f}]")
    print(f"chance {figures['chance']:.3f}; figures: {out / 'figures.json'} "
          f"({seconds['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
