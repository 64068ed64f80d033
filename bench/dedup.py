"""Near-dedup of 1,000,000 short prompts: our vectorised MinHash + LSH vs a `datasets`
baseline (``Dataset.map`` computing datasketch MinHashes, then datasketch's MinHashLSH).

The prompts are synthetic: templates filled from word lists, and a known fraction of
near-duplicates (a copy with a word appended, or with case and punctuation changed).
Both sides use word 3-grams, 64 permutations and threshold 0.7. The baseline is slow
in Python, so by default it runs on a subsample and its 1M time is extrapolated
linearly (LSH insert/query is O(1) per row); the output says so.

    python bench/dedup.py                    # 1M ours, 20k baseline (extrapolated)
    python bench/dedup.py --n 200000 --baseline-n 200000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VERBS = ["Explain", "Describe", "Summarise", "Compare", "Teach me about", "Write a poem on",
         "Give three facts about", "Outline the history of", "Critique", "Draft notes on"]


def make_prompts(n: int, dup_fraction: float, seed: int = 0) -> tuple[list[str], int]:
    """``n`` prompts of 8-14 words, about ``dup_fraction`` of them near-copies of an
    earlier one (a word appended, or case and punctuation changed)."""
    from distilabel.steps.tasks.evol_instruct import generator

    nouns_file = os.path.join(os.path.dirname(generator.__file__), "english_nouns.txt")
    nouns = open(nouns_file, encoding="utf-8").read().split()
    rng = random.Random(seed)
    out: list[str] = []
    dups = 0
    for _ in range(n):
        if out and rng.random() < dup_fraction:
            src = out[rng.randrange(len(out))]
            out.append(src + " please" if rng.random() < 0.5 else src.upper().rstrip(".") + "!")
            dups += 1
        else:
            words = rng.choices(nouns, k=rng.randint(6, 12))
            out.append(f"{rng.choice(VERBS)} {' '.join(words)}.")
    return out, dups


def ours(texts: list[str], threshold: float) -> tuple[float, int]:
    from pipelines.quality import near_duplicate_mask

    t = time.perf_counter()
    mask = near_duplicate_mask(texts, threshold=threshold, num_perm=64, ngram=3)
    return time.perf_counter() - t, int(mask.sum())


def baseline(texts: list[str], threshold: float) -> tuple[float, int]:
    import numpy as np
    from datasets import Dataset, disable_progress_bars
    from datasketch import MinHash, MinHashLSH

    from alignment.data import normalised

    disable_progress_bars()
    t = time.perf_counter()
    ds = Dataset.from_dict({"text": normalised(texts).to_list()})

    def sign(row: dict) -> dict:
        words = row["text"].split()
        grams = [" ".join(words[i:i + 3]) for i in range(max(1, len(words) - 2))]
        m = MinHash(num_perm=64, seed=1, scheme="affine32")
        m.update_batch([g.encode() for g in grams])
        return {"hashvalues": m.hashvalues}

    ds = ds.map(sign, remove_columns=["text"])
    lsh = MinHashLSH(threshold=threshold, num_perm=64)
    dups = 0
    for i, hv in enumerate(ds.with_format("numpy")["hashvalues"]):
        m = MinHash(num_perm=64, seed=1, scheme="affine32",
                    hashvalues=np.asarray(hv, dtype=np.uint32))
        if lsh.query(m):
            dups += 1
        else:
            lsh.insert(str(i), m)
    return time.perf_counter() - t, dups


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--baseline-n", type=int, default=20_000,
                   help="rows for the datasets baseline (extrapolated to --n)")
    p.add_argument("--dup-fraction", type=float, default=0.1)
    p.add_argument("--threshold", type=float, default=0.7)
    args = p.parse_args(argv)

    texts, planted = make_prompts(args.n, args.dup_fraction)
    print(f"{args.n:,} prompts, {planted:,} planted near-duplicates "
          f"({planted / args.n:.1%}); word 3-grams, 64 permutations, threshold {args.threshold}")
    t_ours, found = ours(texts, args.threshold)
    print(f"ours (numpy MinHash + LSH banding): {t_ours:7.1f} s  found {found:,} "
          f"({found / max(planted, 1):.1%} of planted)")

    m = min(args.baseline_n, args.n)
    sub = texts[:m]
    planted_sub = make_prompts(m, args.dup_fraction)[1]
    t_ours_sub, found_sub = ours(sub, args.threshold)
    t_base, found_base = baseline(sub, args.threshold)
    print(f"on the first {m:,} rows ({planted_sub:,} planted):")
    print(f"  ours                               {t_ours_sub:7.1f} s  found {found_sub:,}")
    print(f"  datasets.map + datasketch LSH      {t_base:7.1f} s  found {found_base:,}")
    print(f"  ratio (baseline / ours)            {t_base / t_ours_sub:7.1f}x")
    if m < args.n:
        est = t_base * args.n / m
        print(f"baseline at {args.n:,} rows: EXTRAPOLATED linearly from {m:,} rows: "
              f"{est:.0f} s -> ratio vs ours at {args.n:,}: {est / t_ours:.1f}x")
    else:
        print(f"ratio at {args.n:,} rows (both measured): {t_base / t_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
