"""Which inference path pays on this CPU: raw ``model.generate`` of the same model, the same
prompts, batch and token budget, greedy, in one process, one path after another.

- float32: the reference;
- bfloat16: the weights in bf16 (what align picks where the CPU has native bf16);
- bfloat16 + static cache: transformers' pre-allocated KV cache
  (``cache_implementation="static"``), which is what ``torch.compile`` needs, without
  compiling (compiling costs minutes on two cores, more than a pipeline run here);
- int8 dynamic: every ``nn.Linear`` quantised to int8 weights with
  ``torch.ao.quantization.quantize_dynamic`` (activations quantised on the fly), float32
  elsewhere.

Each path reports tokens/s (generated tokens counted by re-encoding the text), its ratio
to float32, and how many of its greedy outputs equal float32's (and, for the static cache,
plain bf16's: same dtype, so they should all be equal).

    python bench/inference_paths.py [--model smollm2] [--prompts 16] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = ["Explain why the sky is blue.", "Write a haiku about autumn.",
           "Give three tips for learning a language.", "What is a prime number?",
           "Describe how a bicycle works.", "Summarise the plot of Hamlet.",
           "How do vaccines train the immune system?", "What causes the seasons?",
           "Suggest a name for a bakery.", "How do I boil an egg?",
           "What is the difference between weather and climate?", "Translate 'good night' "
           "into French.", "Why do cats purr?", "What is recursion in programming?",
           "List four planets.", "How does a refrigerator keep food cold?"]


def generate(model, tok, prompts: list[str], max_new_tokens: int, **kw) -> tuple[list[str], float]:
    import torch

    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                     add_generation_prompt=True) for p in prompts]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tok.pad_token_id, **kw)
    seconds = time.perf_counter() - start
    return [tok.decode(s, skip_special_tokens=True)
            for s in out[:, batch["input_ids"].shape[1]:]], seconds


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.hardware import cpu_has_fast_bf16
    from alignment.models import resolve_model

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args()
    path = resolve_model(args.model)
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[:args.prompts]
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    def load(dtype):
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()

    def tokens(texts: list[str]) -> int:
        return sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)

    paths = {}
    fp32 = load(torch.float32)
    generate(fp32, tok, prompts[:2], 4)  # warm-up: first calls pay one-off set-up
    paths["float32"] = generate(fp32, tok, prompts, args.max_new_tokens)
    import warnings

    # torch deprecates its quantised tensor types (still shipped in 2.13); the figure is
    # what is measured here
    warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
    warnings.filterwarnings("ignore", message=".*quantize_dynamic.*")
    int8 = torch.ao.quantization.quantize_dynamic(fp32, {torch.nn.Linear}, dtype=torch.qint8)
    generate(int8, tok, prompts[:2], 4)
    paths["int8 dynamic"] = generate(int8, tok, prompts, args.max_new_tokens)
    del fp32, int8
    bf16 = load(torch.bfloat16)
    generate(bf16, tok, prompts[:2], 4)
    paths["bfloat16"] = generate(bf16, tok, prompts, args.max_new_tokens)
    generate(bf16, tok, prompts[:2], 4, cache_implementation="static")
    paths["bf16 + static cache"] = generate(bf16, tok, prompts, args.max_new_tokens,
                                            cache_implementation="static")

    ref_texts, ref_s = paths["float32"]
    ref_rate = tokens(ref_texts) / ref_s
    print(f"\n{Path(path).name}: {len(prompts)} prompts in one batch, {args.max_new_tokens} "
          f"new tokens, greedy; CPU with native bf16: {cpu_has_fast_bf16()} "
          f"({os.cpu_count()} cores, {torch.get_num_threads()} threads)")
    print(f"{'path':22}{'tokens/s':>10}{'x float32':>11}{'= float32':>11}{'= bf16':>8}")
    for name, (texts, seconds) in paths.items():
        rate = tokens(texts) / seconds
        same = sum(a == b for a, b in zip(texts, ref_texts))
        same_bf16 = sum(a == b for a, b in zip(texts, paths["bfloat16"][0]))
        print(f"{name:22}{rate:>10.1f}{rate / ref_rate:>10.2f}x{same:>8}/{len(texts)}"
              f"{same_bf16:>5}/{len(texts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
