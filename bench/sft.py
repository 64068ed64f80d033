"""Benchmark `align sft` against stock TRL `SFTTrainer` on a CPU, side by side.

    python bench/sft.py [--chats 420] [--steps 30] [--model smollm2] [--align-args "..."]

Both train the same short chats (built here with a fixed seed: one user turn and an
answer of one to four sentences), the same model, the same LoRA settings (r 32, alpha
16, every linear layer, no dropout), batch 8 and the same number of steps, each in its
own subprocess so that peak memory is separable (the parent reads each child's rusage
with os.wait4).

- align: `align sft --dataset chats.jsonl --model smollm2` with those settings and
  --eval_split 0, --save_strategy no, --logging_steps 1. `--align-args` adds flags.
- trl: SFTTrainer built the way TRL's documentation shows (model name, SFTConfig,
  peft_config), with SFTConfig's defaults otherwise, plus only what a CPU needs (bf16
  off where the CPU has no native bf16, use_cpu) and the same logging.

Tokens are TRL's own running count of the tokens trained on (`num_tokens`, the sum of
the attention masks: pad tokens are not counted) at the last step; time is the trainer's
train_runtime (loading and tokenisation excluded); the children's CPU seconds are printed
too, as wall time on a shared machine depends on what else runs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from dpo import run_child  # noqa: E402  (a child's exit code, own peak RSS, CPU seconds)

QUESTIONS = ["How do I boil an egg?", "What is a prime number?", "Name three planets.",
             "Why do cats purr?", "What does HTTP stand for?", "How tall is Mount Everest?",
             "Give me a synonym for happy.", "What is the capital of Japan?",
             "How do plants drink water?", "What is 12 times 12?", "Who wrote Hamlet?",
             "What is a haiku?", "How does a compass work?", "What is the speed of sound?"]
SENTENCES = ["The short answer is simple.", "Most people learn this at school.",
             "It depends a little on the details, but the idea is the same.",
             "Here is one way to remember it.", "An example makes it clearer.",
             "Scientists have measured this many times.", "You can check it yourself."]


def make_chats(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"messages": [
        {"role": "user", "content": rng.choice(QUESTIONS)},
        {"role": "assistant", "content": " ".join(rng.choice(SENTENCES)
                                                  for _ in range(rng.randint(1, 4)))}]}
        for _ in range(n)]


def trl_child(data: str, model: str, out: str, steps: int, result: str) -> None:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from alignment.hardware import cpu_has_fast_bf16
    from alignment.models import resolve_model

    cpu = not torch.cuda.is_available()
    args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=8,
                     learning_rate=2e-4, logging_steps=1, save_strategy="no",
                     report_to="none", bf16=cpu_has_fast_bf16() if cpu else None,
                     use_cpu=cpu)
    peft = LoraConfig(r=32, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=resolve_model(model), args=args, peft_config=peft,
                         train_dataset=load_dataset("json", data_files=data)["train"])
    trainer.train()
    Path(result).write_text(json.dumps(counts(trainer.state.log_history)))


def counts(history: list[dict]) -> dict:
    """Tokens trained on and training seconds, from a Trainer's log history."""
    return {"num_tokens": max(e.get("num_tokens", 0) for e in history),
            "train_runtime_s": history[-1]["train_runtime"]}


def measure(what: str, cmd: list[str], env: dict, read) -> dict | None:
    """Run one side in its own process; its counts with peak RSS and CPU seconds."""
    code, rss, cpu = run_child(cmd, env)
    if code != 0:
        print(f"{what} failed (exit {code})", file=sys.stderr)
        return None
    return {**read(), "peak_rss": rss, "cpu_s": cpu}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chats", type=int, default=420)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--align-args", default="", help="extra flags for `align sft`")
    p.add_argument("--only", choices=("align", "trl"))
    p.add_argument("--_trl", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._trl:
        data, out, result, steps = args._trl
        trl_child(data, args.model, out, int(steps), result)
        return 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    rows = {}
    with tempfile.TemporaryDirectory(prefix="align-bench-sft-") as tmp:
        tmp = Path(tmp)
        data = tmp / "chats.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in make_chats(args.chats)))
        if args.only in (None, "align"):
            out = tmp / "align"
            rows["align"] = measure("align sft", [
                sys.executable, "-m", "alignment.cli", "sft", "--dataset", str(data),
                "--model", args.model, "--output_dir", str(out), "--max_steps",
                str(args.steps), "--per_device_train_batch_size", "8", "--lora_r", "32",
                "--lora_alpha", "16", "--eval_split", "0", "--save_strategy", "no",
                "--logging_steps", "1", *shlex.split(args.align_args)], env,
                lambda: counts(json.loads((out / "trainer_state.json").read_text())
                               ["log_history"]))
        if args.only in (None, "trl"):
            result = tmp / "trl.json"
            rows["trl"] = measure("TRL SFTTrainer", [
                sys.executable, __file__, "--model", args.model, "--_trl", str(data),
                str(tmp / "trl"), str(result), str(args.steps)], env,
                lambda: json.loads(result.read_text()))
        if any(r is None for r in rows.values()):
            return 1
    print(f"\nSFT, {args.chats} short chats, {args.steps} steps of batch 8, LoRA r32 "
          f"all-linear, {args.model}, CPU ({os.cpu_count()} cores)")
    print(f"{'':8}{'tokens':>9}{'train s':>9}{'tokens/s':>10}{'s/step':>8}{'peak MiB':>10}"
          f"{'cpu s':>8}")
    for name, r in rows.items():
        r["tokens_per_s"] = r["num_tokens"] / r["train_runtime_s"]
        print(f"{name:8}{r['num_tokens']:>9.0f}{r['train_runtime_s']:>9.1f}"
              f"{r['tokens_per_s']:>10.1f}{r['train_runtime_s'] / args.steps:>8.2f}"
              f"{r['peak_rss'] / 2**20:>10.0f}{r['cpu_s']:>8.0f}")
    if len(rows) == 2:
        a, t = rows["align"], rows["trl"]
        print(f"\nalign / TRL: tokens/s x{a['tokens_per_s'] / t['tokens_per_s']:.2f}, "
              f"peak RSS x{a['peak_rss'] / t['peak_rss']:.2f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
