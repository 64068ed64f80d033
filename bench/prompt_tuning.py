"""Prompt tuning against LoRA on one small SFT task, on the bundled SmolLM2.

    python bench/prompt_tuning.py [--epochs 2] [--out runs/bench-prompt-tuning]

The task teaches a fixed answer style: 32 short sums asked in words, each answered as
``Answer: N [done]``; 8 more sums, with other numbers, are held out. Both runs are
`align sft` with its working defaults and the same data, epochs and seed; only ``--peft``
differs (prompt tuning starts its 20 virtual tokens from a sentence describing the
style; LoRA adapts q_proj and v_proj, rank 16). For each it reports the trainable
parameters, the held-out loss (the assistant reply's tokens, as `align sft` evaluates)
and the format follow rate: the share of held-out prompts whose greedy reply (16 new
tokens) has the ``Answer: N [done]`` form, and the share whose N is also the right sum.
Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alignment.cli import main as align  # noqa: E402

WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()
STYLE = re.compile(r"^Answer: (\d+) \[done\]")
INIT_TEXT = "Reply with the number only, written as Answer: number [done]."


def chats(seed: int) -> tuple[list[dict], list[dict]]:
    """32 training sums and 8 held-out ones (no sum of the same two numbers in both)."""
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(1, 13) for b in range(1, 13) if a <= b]
    rng.shuffle(pairs)
    asks = ["What is {a} plus {b}?", "Add {a} and {b}.", "How much is {a} and {b} together?",
            "If I have {a} apples and get {b} more, how many do I have?"]

    def row(a, b, i):
        q = asks[i % len(asks)].format(a=WORDS[a], b=WORDS[b])
        return {"messages": [{"role": "user", "content": q},
                             {"role": "assistant", "content": f"Answer: {a + b} [done]"}],
                "sum": a + b}
    rows = [row(a, b, i) for i, (a, b) in enumerate(pairs[:40])]
    return rows[:32], rows[32:]


def write(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows))
    return path


def follow_rate(run: Path, held_out: list[dict]) -> tuple[float, float]:
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    model = AutoPeftModelForCausalLM.from_pretrained(str(run)).eval()
    tok = AutoTokenizer.from_pretrained(str(run))
    styled = right = 0
    for r in held_out:
        ids = tok.apply_chat_template(r["messages"][:1], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        m = STYLE.match(reply)
        styled += m is not None
        right += m is not None and int(m.group(1)) == r["sum"]
    return styled / len(held_out), right / len(held_out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-prompt-tuning")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lora-learning-rate", type=float,
                    help="LoRA's learning rate (default: align sft's working default)")
    ap.add_argument("--only", choices=["prompt-tuning", "lora"], help="run one method")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, held_out = chats(args.seed)
    train_path, eval_path = write(train, out / "train.jsonl"), write(held_out, out / "held_out.jsonl")
    methods = {"prompt-tuning": ["--peft", "prompt-tuning", "--num_virtual_tokens", "20",
                                 "--prompt_tuning_init_text", INIT_TEXT],
               # the attention's q/v projections, as `align dpo` adapts on CPU (every
               # linear layer costs more time per step there)
               "lora": ["--peft", "lora", "--lora_target_modules", "q_proj", "v_proj"]}
    if args.lora_learning_rate:
        methods["lora"] += ["--learning_rate", str(args.lora_learning_rate)]
    if args.only:
        methods = {args.only: methods[args.only]}
    results = {}
    for name, flags in methods.items():
        run = out / name
        start = time.perf_counter()
        code = align(["sft", "--dataset", str(train_path), "--eval_dataset", str(eval_path),
                      "--model", "smollm2", "--output_dir", str(run), "--num_train_epochs",
                      str(args.epochs), "--eval_strategy", "no", "--save_strategy", "no",
                      "--seed", str(args.seed), *flags])
        if code != 0:
            return code
        seconds = time.perf_counter() - start
        metrics = json.loads((run / "metrics.json").read_text())
        from safetensors import safe_open

        with safe_open(str(run / "adapter_model.safetensors"), "pt") as f:
            trainable = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
        styled, right = follow_rate(run, held_out)
        results[name] = {"trainable_params": trainable, "eval_loss": metrics["eval"]["loss"],
                         "format_follow": styled, "right_sum": right,
                         "learning_rate": metrics["config"]["SFTConfig"]["learning_rate"],
                         "seconds": round(seconds, 1)}
    print(f"\n{len(train)} training chats, {len(held_out)} held out, {args.epochs} epochs")
    print(f"{'method':<14} {'trainable':>10} {'lr':>7} {'held-out loss':>14} "
          f"{'format':>7} {'right':>6} {'seconds':>8}")
    for name, r in results.items():
        print(f"{name:<14} {r['trainable_params']:>10,} {r['learning_rate']:>7g} "
              f"{r['eval_loss']:>14.3f} {r['format_follow']:>7.0%} {r['right_sum']:>6.0%} "
              f"{r['seconds']:>8.0f}")
    (out / "comparison.json").write_text(json.dumps(results, indent=2))
    return 0


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    sys.exit(main())
