"""Benchmark `align dpo` with its defaults against TRL's stock DPO example, on a CPU.

    python bench/dpo.py [--pairs 64] [--model smollm2] [--threads N]
    python bench/dpo.py --only cache [--pairs 64]   # the reference log-probs cache

Both train one epoch over the same conversational preference pairs (varied lengths,
built here with a fixed seed) on the bundled SmolLM2-135M-Instruct, each in its own subprocess so that peak
memory is separable (the parent reads each child's own rusage with os.wait4).

- align: `align dpo --dataset pairs.jsonl --model smollm2` with nothing else changed but
  --eval_split 0 (so both train on the same pairs), --logging_steps 1 and --save_strategy
  no (as on the TRL side). `--align-args` adds flags, to try other settings.
- trl: what TRL's example script (trl/scripts/dpo.py, its `--use_peft --lora_r 32
  --lora_alpha 16` command) builds: DPOTrainer from the model name, DPOConfig and
  ModelConfig defaults otherwise, plus only what a CPU needs (bf16 off where the CPU has
  no native bf16, use_cpu) and the same logging_steps.

Tokens are TRL's own running count of non-padding tokens trained on (`num_tokens`, the
sum of the attention masks, reference pass not counted) at the final step; time is the
trainer's train_runtime (model loading and tokenisation excluded). On a shared machine
wall time depends on what else runs, so the children's CPU seconds (whole process, user +
system) are printed too. Figures are printed; nothing is asserted.

`--only cache` measures the reference log-probs cache instead, three `align dpo` runs on
the same pairs: `--reference_cache off` (TRL runs the reference on every batch, the
baseline), then an empty cache folder (the reference pass runs once up front and is
stored), then the same folder with another `--beta` (loaded). Each run's time is the whole
command as a user waits for it (model loading and tokenisation included), beside the
trainer's train_runtime and the reference pass's own seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TOPICS = ["photosynthesis", "the water cycle", "compound interest", "binary search",
          "the French revolution", "how vaccines work", "plate tectonics", "recursion",
          "the causes of inflation", "how a bicycle stays upright", "public key cryptography",
          "the history of the printing press", "why the sky is blue", "sourdough bread",
          "black holes", "the rules of chess"]
SENTENCES = ["It starts with a simple idea that builds on everyday experience.",
             "The key step is to break the problem into smaller parts and treat each in turn.",
             "A common mistake is to skip the definitions, which makes the rest confusing.",
             "For example, consider what happens when the same process repeats many times.",
             "Scientists measured this carefully over decades, and the results agree.",
             "In short, the effect grows with time, which is why small differences matter.",
             "You can check this yourself with a pencil, some paper and a little patience.",
             "Historians still debate the details, but the broad outline is well established."]


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    """Conversational pairs of varied length: a 1-3 sentence answer against a curt one.

    Message lists, so that both trainers apply the same chat template and see the same
    tokens (align wraps plain text in the template; TRL's example would train it raw)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        prompt = rng.choice(["Explain {} to a curious teenager.", "What should I know about {}?",
                             "Give me a short overview of {}, with one example."]).format(topic)
        chosen = f"Here is an overview of {topic}. " + " ".join(
            rng.choice(SENTENCES) for _ in range(rng.randint(1, 3)))
        rejected = rng.choice(["I don't know.", f"{topic.capitalize()} is complicated.",
                               "Look it up. " + rng.choice(SENTENCES)])
        rows.append({"prompt": [{"role": "user", "content": prompt}],
                     "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}]})
    return rows


def run_child(cmd: list[str], env: dict) -> tuple[int, int, float]:
    """Run a command; return its exit code, its own peak RSS in bytes and its CPU seconds."""
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux
    return proc.returncode, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def cache_runs(data: Path, model: str, tmp: Path, env: dict, extra: list[str]) -> int:
    """Time `align dpo` without the reference cache, filling it, and loading it."""
    runs = [("off", ["--reference_cache", "off"]),
            ("first (stores)", ["--reference_cache", str(tmp / "cache")]),
            ("again (loads)", ["--reference_cache", str(tmp / "cache"), "--beta", "0.5"])]
    results = {}
    for i, (name, flags) in enumerate(runs):
        out = tmp / f"cache-{i}"
        start = time.perf_counter()
        code, rss, cpu = run_child([sys.executable, "-m", "alignment.cli", "dpo",
                                    "--dataset", str(data), "--model", model,
                                    "--output_dir", str(out), "--eval_split", "0",
                                    "--logging_steps", "1", "--save_strategy", "no",
                                    *flags, *extra], env)
        wall = time.perf_counter() - start
        if code != 0:
            print(f"align dpo ({name}) failed (exit {code})", file=sys.stderr)
            return 1
        m = json.loads((out / "metrics.json").read_text())
        ref = m.get("reference_cache", {}).get("train", {})
        results[name] = {"wall_s": wall, "train_runtime_s": m["train_runtime_s"],
                         "reference_s": ref.get("seconds"), "loaded": ref.get("loaded"),
                         "first_loss": m.get("train_loss_first"), "cpu_s": cpu,
                         "peak_rss": rss}
    print(f"\nreference log-probs cache: DPO on {sum(1 for _ in open(data))} pairs, "
          f"{Path(model).name}, one epoch, CPU ({os.cpu_count()} cores)")
    print(f"{'':16}{'command s':>10}{'train s':>9}{'ref pass s':>11}{'cpu s':>8}"
          f"{'first loss':>12}")
    for name, r in results.items():
        ref = "-" if r["reference_s"] is None else f"{r['reference_s']:.2f}"
        print(f"{name:16}{r['wall_s']:>10.1f}{r['train_runtime_s']:>9.1f}{ref:>11}"
              f"{r['cpu_s']:>8.0f}{r['first_loss']:>12.4f}")
    off, first, again = results.values()
    print(f"\nloaded / off: command time x{again['wall_s'] / off['wall_s']:.2f}, training "
          f"x{again['train_runtime_s'] / off['train_runtime_s']:.2f}; stores / off: command "
          f"x{first['wall_s'] / off['wall_s']:.2f}")
    print(json.dumps(results))
    return 0


def trl_child(data: str, model: str, out: str, result: str) -> None:
    """TRL's example script, as its `--use_peft --lora_r 32 --lora_alpha 16` command runs."""
    import torch
    from datasets import load_dataset
    from trl import DPOConfig, DPOTrainer, ModelConfig, get_peft_config, get_quantization_config

    from alignment.hardware import cpu_has_fast_bf16

    model_args = ModelConfig(model_name_or_path=model, use_peft=True, lora_r=32, lora_alpha=16)
    cpu = not torch.cuda.is_available()
    training_args = DPOConfig(
        output_dir=out, learning_rate=5e-6, num_train_epochs=1, per_device_train_batch_size=2,
        gradient_accumulation_steps=8, remove_unused_columns=False,
        # CPU: no bf16 autocast where the CPU emulates it, and no checkpoints mid-run
        bf16=cpu_has_fast_bf16() if cpu else None, use_cpu=cpu, save_strategy="no",
        logging_steps=1, report_to="none")
    training_args.model_init_kwargs = dict(revision=model_args.model_revision,
                                           attn_implementation=model_args.attn_implementation,
                                           dtype=model_args.dtype)
    dataset = load_dataset("json", data_files=data)
    trainer = DPOTrainer(model=model_args.model_name_or_path, args=training_args,
                         train_dataset=dataset["train"],
                         quantization_config=get_quantization_config(model_args),
                         peft_config=get_peft_config(model_args))
    output = trainer.train()
    tokens = next(e["num_tokens"] for e in reversed(trainer.state.log_history) if "num_tokens" in e)
    Path(result).write_text(json.dumps({
        "train_runtime_s": output.metrics["train_runtime"], "num_tokens": tokens,
        "steps": output.global_step, "gradient_checkpointing": training_args.gradient_checkpointing,
        "bf16": training_args.bf16, "threads": torch.get_num_threads()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, help="torch threads in both children")
    parser.add_argument("--only", choices=["align", "trl", "cache"],
                        help="run one side only, or `cache`: the reference log-probs cache")
    parser.add_argument("--align-args", default="", help="extra flags for align dpo, to try changes")
    parser.add_argument("--trl-child", nargs=4, metavar=("DATA", "MODEL", "OUT", "RESULT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_child:
        trl_child(*args.trl_child)
        return 0

    from alignment.models import resolve_model

    model = resolve_model(args.model)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    data = tmp / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(args.pairs)))

    if args.only == "cache":
        return cache_runs(data, model, tmp, env, args.align_args.split())
    results = {}
    if args.only in (None, "align"):
        out = tmp / "align"
        code, rss, cpu = run_child([sys.executable, "-m", "alignment.cli", "dpo", "--dataset", str(data),
                               "--model", model, "--output_dir", str(out), "--eval_split", "0",
                               "--logging_steps", "1", "--save_strategy", "no",
                               *args.align_args.split()], env)
        if code != 0:
            print(f"align dpo failed (exit {code})", file=sys.stderr)
            return 1
        m = json.loads((out / "metrics.json").read_text())
        results["align"] = {"train_runtime_s": m["train_runtime_s"],
                            "num_tokens": m["train"]["num_tokens"], "steps": m["global_step"],
                            "peak_rss": rss, "cpu_s": cpu}
    if args.only in (None, "trl"):
        result = tmp / "trl.json"
        code, rss, cpu = run_child([sys.executable, __file__, "--trl-child", str(data), model,
                               str(tmp / "trl"), str(result)], env)
        if code != 0:
            print(f"TRL example failed (exit {code})", file=sys.stderr)
            return 1
        results["trl"] = {**json.loads(result.read_text()), "peak_rss": rss, "cpu_s": cpu}

    print(f"\nDPO on {args.pairs} pairs, {Path(model).name}, one epoch, CPU "
          f"({os.cpu_count()} cores{', ' + str(args.threads) + ' threads' if args.threads else ''})")
    print(f"{'':8}{'steps':>7}{'tokens':>9}{'train s':>9}{'tokens/s':>10}{'peak RSS MiB':>14}"
          f"{'cpu s':>8}")
    for name, r in results.items():
        r["tokens_per_s"] = r["num_tokens"] / r["train_runtime_s"]
        print(f"{name:8}{r['steps']:>7}{r['num_tokens']:>9.0f}{r['train_runtime_s']:>9.1f}"
              f"{r['tokens_per_s']:>10.1f}{r['peak_rss'] / 2**20:>14.0f}{r['cpu_s']:>8.0f}")
    if len(results) == 2:
        a, t = results["align"], results["trl"]
        print(f"\nalign / trl: tokens/s x{a['tokens_per_s'] / t['tokens_per_s']:.2f}, "
              f"peak RSS x{a['peak_rss'] / t['peak_rss']:.2f}  "
              "(target: tokens/s >= 1.3x at no more memory)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
