"""Self-Instruct (Alpaca): new instructions from a pool of seed tasks, then responses.

1. Each of ``--num-prompts`` requests shows the teacher ``--examples`` tasks sampled
   (seeded) from the seed pool and asks for ``--per-prompt`` new instructions
   (distilabel's ``SelfInstruct`` task).
2. The candidates are cleaned (numbering stripped; too short, too long, or asking for
   images/files dropped) and kept only if novel: ROUGE-L F1 below ``--rouge-threshold``
   (0.7) against every instruction in the pool, which grows with each acceptance, in a
   fixed order. ROUGE-L is computed here from the longest common subsequence of
   lower-cased word tokens (no extra dependency).
3. The teacher answers each accepted instruction (``TextGeneration``); each row says how
   its answer ended (``finish_reasons``, ``truncated``: cut off by ``--max-new-tokens``).

Both generation stages are distilabel pipelines with their own journal, so a killed
run resumes at the stage and row where it stopped.

    python -m pipelines.self_instruct --num-prompts 20 -o data/self_instruct.jsonl
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter

from distilabel.pipeline import Pipeline
from distilabel.steps import FormatTextGenerationSFT
from distilabel.steps.tasks import SelfInstruct, TextGeneration

from alignment.data import read_prompts
from pipelines import DATA_DIR, runner
from pipelines.llms import finish_column, sft_finish_fields

NAME = "align-self-instruct"
ANSWER = "answer"  # the answering task
UNSUITABLE = re.compile(r"\b(image|images|picture|graph|plot|draw|video|file|map|"
                        r"go to|website|url)\b", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:\d+\s*[.)]|[-*•])\s*")


# ---------------------------------------------------------------- ROUGE-L

def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence of two token lists (one-row dynamic programme)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: list[str], reference: list[str]) -> float:
    """ROUGE-L F1 of two token lists."""
    if not candidate or not reference:
        return 0.0
    lcs = lcs_length(candidate, reference)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(candidate), lcs / len(reference)
    return 2 * p * r / (p + r)


def novelty_filter(candidates: list[str], pool: list[str], threshold: float = 0.7,
                   min_words: int = 3, max_words: int = 150) -> tuple[list[str], Counter]:
    """Accept candidates in order; each accepted one joins the pool. Counts why others fail."""
    pool_tokens = [tokens(p) for p in pool]
    accepted, rejected = [], Counter()
    for text in candidates:
        text = _BULLET.sub("", text).strip()
        toks = tokens(text)
        if len(toks) < min_words or len(toks) > max_words:
            rejected["length"] += 1
        elif UNSUITABLE.search(text):
            rejected["unsuitable"] += 1
        elif any(rouge_l(toks, p) >= threshold for p in pool_tokens):
            rejected["rouge_l"] += 1
        else:
            accepted.append(text)
            pool_tokens.append(toks)
    return accepted, rejected


# ---------------------------------------------------------------- pipelines

def build_queries(rows: list[dict], llm, per_prompt: int, batch_size: int
                  ) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "input"}`` (the in-context tasks) -> ``instructions``."""
    with Pipeline(name=f"{NAME}-queries", cache_dir=runner.cache_root(),
                  description="Self-Instruct: new instructions") as pipeline:
        journal = runner.Journal(columns=["id", "order", "instructions", "model_name"],
                                 input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> SelfInstruct(llm=llm, num_instructions=per_prompt, input_batch_size=batch_size)
         >> journal)
    return pipeline, journal


def build_answers(rows: list[dict], llm, batch_size: int) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "instruction"}`` -> SFT ``messages``."""
    with Pipeline(name=f"{NAME}-answers", cache_dir=runner.cache_root(),
                  description="Self-Instruct: responses") as pipeline:
        journal = runner.Journal(columns=["id", "order", "messages", "model_name"],
                                 optional=[finish_column(ANSWER)], input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> TextGeneration(name=ANSWER, llm=llm, input_batch_size=batch_size)
         >> FormatTextGenerationSFT(input_batch_size=batch_size) >> journal)
    return pipeline, journal


def contexts(seeds: list[str], num_prompts: int, examples: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["\n".join(f"Task: {t}" for t in rng.sample(seeds, min(examples, len(seeds))))
            for _ in range(num_prompts)]


def generate(seeds: list[str], llm, *, num_prompts: int = 4, per_prompt: int = 5,
             examples: int = 3, threshold: float = 0.7, seed: int = 0, batch_size: int = 8,
             fresh: bool = False, ray: bool = False) -> tuple[list[dict], dict]:
    """SFT rows for the accepted instructions, and the counts for the card."""
    ctx = contexts(seeds, num_prompts, examples, seed)
    # several requests may show the same sample of tasks; the index keeps ids unique
    rows = [{"id": runner.text_id(f"{i}\n{c}"), "order": [i], "input": c}
            for i, c in enumerate(ctx)]
    done = runner.run(lambda part: build_queries(part, llm, per_prompt, batch_size), rows,
                      fresh=fresh, ray=ray)
    candidates = [t for r in done for t in (r["instructions"] or [])]
    accepted, rejected = novelty_filter(candidates, seeds, threshold)
    rows = [{"id": runner.text_id(t), "order": [i], "instruction": t}
            for i, t in enumerate(accepted)]
    out = runner.run(lambda part: build_answers(part, llm, batch_size), rows, fresh=fresh,
                     ray=ray)
    for row in out:
        row.update(sft_finish_fields([row.pop(finish_column(ANSWER), None)]))
    counts = {"requests": len(ctx), "candidates": len(candidates),
              "accepted": len(accepted), "rejected": dict(sorted(rejected.items())),
              "parse_failures": sum(1 for r in done if not r["instructions"])}
    return out, counts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate self-instruct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed-tasks", default=str(DATA_DIR / "seed_tasks.jsonl"),
                   help="seed task pool (instruction/prompt column; default: 26 shipped)")
    p.add_argument("--num-prompts", type=int, default=8, help="requests to the teacher")
    p.add_argument("--per-prompt", type=int, default=5, help="instructions per request")
    p.add_argument("--examples", type=int, default=3, help="seed tasks shown per request")
    p.add_argument("--rouge-threshold", type=float, default=0.7,
                   help="reject a candidate with ROUGE-L >= this against the pool")
    runner.teacher_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    seeds = read_prompts(args.seed_tasks)
    llm = runner.teacher(args)
    rows, counts = generate(seeds, llm, num_prompts=args.num_prompts,
                            per_prompt=args.per_prompt, examples=args.examples,
                            threshold=args.rouge_threshold, seed=args.seed,
                            batch_size=args.concurrency, fresh=args.fresh, ray=args.ray)
    runner.finish(rows, args, "Self-Instruct data", {
        **runner.generation_info(args, [llm]), "technique": "self-instruct",
        "seed_data": args.seed_tasks, "seed_tasks": len(seeds),
        "rouge_l_threshold": args.rouge_threshold, "rouge_l": "own LCS implementation",
        "prompt_template": "distilabel SelfInstruct (self-instruct.jinja2)",
        "instructions_per_request": args.per_prompt, **counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
