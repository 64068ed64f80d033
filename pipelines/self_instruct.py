"""Self-Instruct (Alpaca): grow a pool of instructions from seed tasks, then answer them.

The pool starts as the seed tasks and grows round by round until it holds
``--num-instructions`` new instructions:

1. Each round sends ``--num-prompts`` requests; each shows the teacher ``--examples``
   tasks sampled (seeded by ``--seed`` and the round) from the pool as it stands, seed
   tasks and instructions accepted in earlier rounds alike, and asks for
   ``--per-prompt`` new instructions (distilabel's ``SelfInstruct`` task).
2. The candidates are cleaned (numbering stripped; too short, too long, or asking for
   images/files dropped) and kept only if novel: ROUGE-L F1 below ``--rouge-threshold``
   (0.7) against every instruction in the pool, which grows with each acceptance, in a
   fixed order, so a candidate is also compared with those accepted earlier in the same
   round. ROUGE-L is computed here from the longest common subsequence of lower-cased
   word tokens (no extra dependency).
3. Rounds stop when the target is reached (the last round's surplus is dropped), when a
   round adds no instruction (the teacher has run out of new ones at this threshold), or
   after ``--max-rounds``. The run prints each round's counts (asked, parsed, rejected as
   too similar, accepted) and why it stopped; the card records both.
4. The teacher answers each accepted instruction (``TextGeneration``); each row says the
   round it was accepted in and how its answer ended (``finish_reasons``, ``truncated``:
   cut off by ``--max-new-tokens``).

Each round's requests and the answers are distilabel pipelines with their own journal.
A round's requests follow from the pool, and the pool from the journalled replies of
the rounds before, so a killed run started again with the same options replays the
finished rounds from their journals and resumes at the round and row where it stopped.

    python -m pipelines.self_instruct --num-instructions 100 -o data/self_instruct.jsonl
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
from alignment.errors import ConfigError
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
    """Rows ``{"id", "order", "instruction", "round"}`` -> SFT ``messages``."""
    with Pipeline(name=f"{NAME}-answers", cache_dir=runner.cache_root(),
                  description="Self-Instruct: responses") as pipeline:
        journal = runner.Journal(columns=["id", "order", "round", "messages", "model_name"],
                                 optional=[finish_column(ANSWER)], input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> TextGeneration(name=ANSWER, llm=llm, input_batch_size=batch_size)
         >> FormatTextGenerationSFT(input_batch_size=batch_size) >> journal)
    return pipeline, journal


def contexts(pool: list[str], num_prompts: int, examples: int, seed: int,
             round_: int = 1) -> list[str]:
    """The in-context tasks of one round's requests, sampled from the pool as it stands.

    A string seed keeps the sample the same in every process (``random`` hashes it
    with SHA-512), so a resumed run asks exactly what the killed one asked.
    """
    rng = random.Random(f"{seed}/{round_}")
    return ["\n".join(f"Task: {t}" for t in rng.sample(pool, min(examples, len(pool))))
            for _ in range(num_prompts)]


REJECT_REASONS = ("length", "rouge_l", "unsuitable")  # novelty_filter's reasons


def ask(pool: list[str], llm, round_: int, *, num_prompts: int, per_prompt: int,
        examples: int, seed: int, batch_size: int, fresh: bool = False,
        ray: bool = False) -> tuple[list[str], int]:
    """One round's requests: the candidate instructions in request order, and how many
    replies held none. Journalled as a run of its own (its rows follow from the pool)."""
    ctx = contexts(pool, num_prompts, examples, seed, round_)
    # several requests may show the same sample of tasks; the index keeps ids unique
    rows = [{"id": runner.text_id(f"{round_}\n{i}\n{c}"), "order": [i], "input": c}
            for i, c in enumerate(ctx)]
    done = runner.run(lambda part: build_queries(part, llm, per_prompt, batch_size), rows,
                      fresh=fresh, ray=ray)
    return ([t for r in done for t in (r["instructions"] or [])],
            sum(1 for r in done if not r["instructions"]))


def grow(seeds: list[str], llm, *, target: int, max_rounds: int, num_prompts: int,
         per_prompt: int, examples: int, threshold: float, seed: int, batch_size: int,
         fresh: bool = False, ray: bool = False,
         log=print) -> tuple[list[tuple[int, str]], dict]:
    """Rounds of requests until ``target`` novel instructions exist, a round adds none,
    or ``max_rounds`` have run: the ``(round, instruction)`` pairs accepted, and the
    per-round counts with the reason for stopping."""
    accepted: list[tuple[int, str]] = []
    rounds: list[dict] = []
    stopped = "max_rounds"
    for r in range(1, max_rounds + 1):
        pool = seeds + [t for _, t in accepted]
        candidates, failures = ask(pool, llm, r, num_prompts=num_prompts,
                                   per_prompt=per_prompt, examples=examples, seed=seed,
                                   batch_size=batch_size, fresh=fresh, ray=ray)
        novel, rejected = novelty_filter(candidates, pool, threshold)
        kept = novel[:target - len(accepted)]
        accepted += [(r, t) for t in kept]
        counts = {"round": r, "requests": num_prompts, "asked": num_prompts * per_prompt,
                  "parsed": len(candidates), "parse_failures": failures,
                  "rejected": {k: rejected.get(k, 0) for k in REJECT_REASONS},
                  "accepted": len(kept), "surplus": len(novel) - len(kept),
                  "pool": len(seeds) + len(accepted)}
        rounds.append(counts)
        log(round_line(counts))
        if len(accepted) >= target:
            stopped = "target_reached"
            break
        if not kept:
            stopped = "no_new_instructions"
            break
    log(stop_line(stopped, len(accepted), target, len(rounds)))
    return accepted, {"target": target, "max_rounds": max_rounds, "stopped": stopped,
                      "rounds": rounds}



def round_line(c: dict) -> str:
    rej = c["rejected"]
    surplus = f", {c['surplus']} over the target dropped" if c["surplus"] else ""
    return (f"self-instruct round {c['round']}: asked {c['asked']} instructions in "
            f"{c['requests']} requests, parsed {c['parsed']} ({c['parse_failures']} "
            f"replies without any), rejected {rej['rouge_l']} as too similar and "
            f"{rej['length'] + rej['unsuitable']} as unsuitable or of the wrong length, "
            f"accepted {c['accepted']}{surplus}; pool now {c['pool']}")


def stop_line(stopped: str, accepted: int, target: int, rounds: int) -> str:
    why = {"target_reached": "target reached",
           "no_new_instructions": f"round {rounds} added no new instruction",
           "max_rounds": f"--max-rounds {rounds} reached"}[stopped]
    return f"self-instruct: stopped after {rounds} round(s), {why}: {accepted} of " \
           f"{target} instructions"


def generate(seeds: list[str], llm, *, num_instructions: int = 40, max_rounds: int = 10,
             num_prompts: int = 8, per_prompt: int = 5, examples: int = 3,
             threshold: float = 0.7, seed: int = 0, batch_size: int = 8,
             fresh: bool = False, ray: bool = False, log=print) -> tuple[list[dict], dict]:
    """SFT rows for the accepted instructions (each with the ``round`` that accepted
    it), and the counts for the card."""
    if num_instructions < 1 or max_rounds < 1 or num_prompts < 1 or per_prompt < 1:
        raise ConfigError("--num-instructions, --max-rounds, --num-prompts and "
                          "--per-prompt must each be at least 1")
    accepted, counts = grow(seeds, llm, target=num_instructions, max_rounds=max_rounds,
                            num_prompts=num_prompts, per_prompt=per_prompt,
                            examples=examples, threshold=threshold, seed=seed,
                            batch_size=batch_size, fresh=fresh, ray=ray, log=log)
    rows = [{"id": runner.text_id(t), "order": [i], "instruction": t, "round": r}
            for i, (r, t) in enumerate(accepted)]
    out = runner.run(lambda part: build_answers(part, llm, batch_size), rows, fresh=fresh,
                     ray=ray)
    for row in out:
        row.update(sft_finish_fields([row.pop(finish_column(ANSWER), None)]))
    rounds = counts["rounds"]
    totals = {"requests": sum(c["requests"] for c in rounds),
              "candidates": sum(c["parsed"] for c in rounds), "accepted": len(accepted),
              "rejected": {k: n for k in REJECT_REASONS
                           if (n := sum(c["rejected"][k] for c in rounds))},
              "parse_failures": sum(c["parse_failures"] for c in rounds)}
    return out, {**totals, **counts}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate self-instruct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed-tasks", default=str(DATA_DIR / "seed_tasks.jsonl"),
                   help="seed task pool (instruction/prompt column; default: 26 shipped)")
    p.add_argument("--num-instructions", type=int, default=40,
                   help="new instructions to collect (the target size)")
    p.add_argument("--max-rounds", type=int, default=10,
                   help="stop after this many rounds even if the target is not reached")
    p.add_argument("--num-prompts", type=int, default=8, help="requests per round")
    p.add_argument("--per-prompt", type=int, default=5, help="instructions per request")
    p.add_argument("--examples", type=int, default=3, help="pool tasks shown per request")
    p.add_argument("--rouge-threshold", type=float, default=0.7,
                   help="reject a candidate with ROUGE-L >= this against the pool")
    runner.teacher_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    seeds = read_prompts(args.seed_tasks)
    llm = runner.teacher(args)
    rows, counts = generate(seeds, llm, num_instructions=args.num_instructions,
                            max_rounds=args.max_rounds, num_prompts=args.num_prompts,
                            per_prompt=args.per_prompt, examples=args.examples,
                            threshold=args.rouge_threshold, seed=args.seed,
                            batch_size=args.concurrency, fresh=args.fresh, ray=args.ray)
    runner.finish(rows, args, "Self-Instruct data", {
        **runner.generation_info(args, [llm]), "technique": "self-instruct",
        "seed_data": args.seed_tasks, "seed_tasks": len(seeds),
        "rouge_l_threshold": args.rouge_threshold, "rouge_l": "own LCS implementation",
        "prompt_template": "distilabel SelfInstruct (self-instruct.jinja2)",
        "instructions_per_request": args.per_prompt, "examples_per_request": args.examples,
        **counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
