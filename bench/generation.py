"""Generation throughput: the pipeline's teacher vs raw batched generate vs distilabel's stock LLM.

Same model, same prompts, same batch size, same max_new_tokens, greedy decoding, in one
process, one after the other:

- raw:      ``model.generate`` on left-padded batches sorted by length (the backend called
            directly, with no pipeline around it);
- pipeline: ``BatchedTransformersLLM`` driven as the preference pipeline drives it, through
            distilabel's ``TextGeneration.process`` in ``input_batch_size`` chunks; it
            decodes with ``alignment.engine``, which drops each answer from its batch
            when it ends, so it can beat ``raw``;
- stock:    distilabel's ``TransformersLLM`` (a transformers text-generation pipeline,
            one prompt per ``generate`` call).

Tokens are counted the same way for all three (the generated text re-encoded), and the
outputs are compared, so the runs are known to do the same work.

    python bench/generation.py                      # bundled SmolLM2, 16 prompts
    python bench/generation.py --num-prompts 8 --max-new-tokens 32 --skip-stock
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def raw_generate(path: str, chats: list, batch_size: int, max_new_tokens: int) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = [tok(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
               add_special_tokens=False).input_ids for c in chats]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: list[str] = [""] * len(ids)
    start = time.perf_counter()
    for b in range(0, len(order), batch_size):
        rows = order[b:b + batch_size]
        batch = tok.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
        with torch.inference_mode():
            gen = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id)
        for i, seq in zip(rows, gen[:, batch["input_ids"].shape[1]:]):
            out[i] = tok.decode(seq, skip_special_tokens=True)
    return out, time.perf_counter() - start


def pipeline_generate(path: str, chats: list, batch_size: int, max_new_tokens: int):
    from distilabel.steps.tasks import TextGeneration

    from pipelines.llms import BatchedTransformersLLM

    llm = BatchedTransformersLLM(model=path, batch_size=batch_size,
                                 generation_kwargs={"max_new_tokens": max_new_tokens,
                                                    "do_sample": False})
    # the same settings as pipelines/preference.py: grouped generations, input batches
    task = TextGeneration(llm=llm, num_generations=1, group_generations=True,
                          input_batch_size=max(batch_size, 8))
    task.load()
    rows = [{"instruction": c[0]["content"]} for c in chats]
    out: list[str] = []
    start = time.perf_counter()
    for b in range(0, len(rows), task.input_batch_size):
        for produced in task.process(rows[b:b + task.input_batch_size]):
            out += [r["generation"][0] for r in produced]
    return out, time.perf_counter() - start


def stock_generate(path: str, chats: list, batch_size: int, max_new_tokens: int):
    from distilabel.models.llms import TransformersLLM

    llm = TransformersLLM(model=path, torch_dtype="float32")
    llm.load()
    start = time.perf_counter()
    res = llm.generate_outputs(chats, num_generations=1, max_new_tokens=max_new_tokens,
                               do_sample=False, repetition_penalty=1.0, temperature=1.0)
    return [r["generations"][0] for r in res], time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="bundled name, folder or hub id")
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16,
                    help="prompts per batch for raw and pipeline (the pipelines' default)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--skip-stock", action="store_true", help="skip distilabel's TransformersLLM")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice); on a "
                    "shared, oversubscribed CPU one thread per process is often faster")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from alignment.models import resolve_model
    from pipelines.preference import load_seeds

    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model(args.model)
    seeds = load_seeds()
    prompts = (seeds * (args.num_prompts // len(seeds) + 1))[:args.num_prompts]
    chats = [[{"role": "user", "content": p}] for p in prompts]
    tok = AutoTokenizer.from_pretrained(path)
    print(f"model {args.model}, {len(chats)} prompts, batch {args.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}, greedy, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")

    runs = {"raw": raw_generate, "pipeline": pipeline_generate}
    if not args.skip_stock:
        runs["stock"] = stock_generate
    results, texts = {}, {}
    for name, fn in runs.items():
        texts[name], seconds = fn(path, chats, args.batch_size, args.max_new_tokens)
        tokens = sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts[name])
        same = sum(a.strip() == b.strip() for a, b in zip(texts[name], texts["raw"]))
        results[name] = {"seconds": round(seconds, 2), "tokens": tokens,
                         "tokens_per_s": round(tokens / seconds, 1), "same_as_raw": same}
        print(f"{name:9s} {seconds:7.2f} s  {tokens:6d} tokens  {tokens / seconds:7.1f} tok/s  "
              f"outputs equal to raw: {same}/{len(chats)}", flush=True)

    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    tps = {k: v["tokens_per_s"] for k, v in results.items()}
    ratios = {"pipeline/raw": round(tps["pipeline"] / tps["raw"], 3)}
    if "stock" in tps:
        ratios["pipeline/stock"] = round(tps["pipeline"] / tps["stock"], 2)
        ratios["raw/stock"] = round(tps["raw"] / tps["stock"], 2)
    for k, v in ratios.items():
        print(f"{k:15s} {v:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": vars(args), "results": results,
                                               "load_average_end": os.getloadavg()[0],
                                               "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
