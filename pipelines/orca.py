"""Orca-style explanation tuning: answers that show their reasoning.

Each prompt gets one of ``SYSTEM_MESSAGES`` (chosen from a hash of the seed and the
prompt, so a row's choice never depends on batch order or on a resumed run), and the
teacher answers under that system message. The system message stays in ``messages``
so the student learns to reason step by step when asked to. Each row says how its
answer ended (``finish_reasons``, ``truncated``: cut off by ``--max-new-tokens``, which
long explanations reach first).

    python -m pipelines.orca --prompts prompts.jsonl --output data/orca.jsonl
    python -m pipelines.orca --dry-run --output /tmp/orca.jsonl   # fake teacher
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distilabel.pipeline import Pipeline
from distilabel.steps import FormatTextGenerationSFT
from distilabel.steps.tasks import TextGeneration

from alignment.data import read_prompts, stable_hash
from pipelines import DATA_DIR, runner
from pipelines.llms import finish_column, sft_finish_fields

NAME = "align-orca"
ANSWER = "answer"  # the answering task

SYSTEM_MESSAGES = (
    "You are a careful tutor. Work through the task one step at a time and say why each "
    "step follows from the previous one before giving the final answer.",
    "Before answering, list the facts the question gives you, then reason from them to "
    "the answer, explaining every inference.",
    "You are an assistant who shows its work. Break the problem into small parts, solve "
    "each part, and then combine them into a final answer.",
    "Answer as a patient teacher would to a student who wants to understand, not just "
    "to know: explain the reasoning behind the answer in plain language.",
    "Think aloud: describe how you interpret the request, which approach you choose and "
    "why, and then carry it out step by step.",
    "Give the answer first in one sentence, then justify it with a numbered chain of "
    "reasoning that a sceptical reader could check.",
    "You are a meticulous analyst. State your assumptions explicitly, reason through the "
    "task step by step, and point out where an assumption matters.",
    "Explain your answer as if to a twelve-year-old: simple words, one idea per step, and "
    "a short reason for each step.",
    "When the task has several possible answers, compare them, explain why you prefer "
    "one, and show the steps that lead to it.",
    "Solve the task by reasoning in stages. After each stage, briefly check that it is "
    "consistent with what the question asks.",
    "You are a helpful assistant who never gives a bare answer: every conclusion comes "
    "with the reasons that support it.",
    "Restate the question in your own words, outline a plan, follow the plan step by "
    "step, and finish with a clearly marked answer.",
    "Answer the question, then explain which parts of the question led you to that "
    "answer and why other answers would be wrong.",
    "Use step-by-step reasoning. If the task involves numbers, show each calculation; if "
    "it involves words, quote the parts you rely on.",
    "You are an expert who teaches. Give a thorough, well-justified answer, walking the "
    "reader through the reasoning so they could solve a similar task alone.",
    "Be faithful to the task's instructions. Explain how you followed each of them, step "
    "by step, and give the final result at the end.",
)


def pick_system(prompt: str, seed: int) -> str:
    return SYSTEM_MESSAGES[stable_hash(f"{seed}\n{prompt}") % len(SYSTEM_MESSAGES)]


def build(rows: list[dict], llm, batch_size: int = 8) -> tuple[Pipeline, runner.Journal]:
    """The pipeline over rows ``{"id", "order", "instruction", "system_prompt"}``."""
    with Pipeline(name=NAME, cache_dir=runner.cache_root(),
                  description="Orca-style explanation tuning") as pipeline:
        journal = runner.Journal(columns=["id", "order", "messages", "system_prompt",
                                          "model_name"], optional=[finish_column(ANSWER)],
                                 input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> TextGeneration(name=ANSWER, llm=llm, input_batch_size=batch_size)
         >> FormatTextGenerationSFT(input_batch_size=batch_size)
         >> journal)
    return pipeline, journal


def generate(prompts: list[str], llm, *, seed: int = 0, batch_size: int = 8,
             fresh: bool = False, ray: bool = False) -> list[dict]:
    """Rows ``{"id", "messages": [system, user, assistant], "system_prompt", "model_name",
    "finish_reasons", "truncated"}``."""
    rows = [{"id": runner.text_id(p), "order": [i], "instruction": p,
             "system_prompt": pick_system(p, seed)} for i, p in enumerate(prompts)]
    out = runner.run(lambda part: build(part, llm, batch_size), rows, fresh=fresh, ray=ray)
    for row in out:
        row.update(sft_finish_fields([row.pop(finish_column(ANSWER), None)]))
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate orca", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", default=str(DATA_DIR / "seed_tasks.jsonl"),
                   help="prompts file (prompt/instruction column or messages); default: "
                        "the shipped seed tasks")
    p.add_argument("--limit", type=int, default=None, help="use the first N prompts")
    runner.teacher_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    prompts = read_prompts(args.prompts, args.limit)
    llm = runner.teacher(args)
    rows = generate(prompts, llm, seed=args.seed, batch_size=args.concurrency,
                    fresh=args.fresh, ray=args.ray)
    runner.finish(rows, args, "Orca-style explanation tuning data", {
        **runner.generation_info(args, [llm]), "technique": "orca explanation tuning",
        "seed_data": str(Path(args.prompts)), "prompts": len(prompts),
        "system_messages": list(SYSTEM_MESSAGES)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
