"""Evol-Instruct (WizardLM): make instructions harder over several rounds, then answer.

Each round applies one mutation per instruction, chosen from a hash of the seed and
the instruction (so a resumed run makes the same choices): in depth (add constraints,
deepen, concretise, increase reasoning steps) or in breadth (a new, rarer prompt in
the same domain); distilabel's ``EvolInstruct`` templates do the rewriting. After each
round an elimination step rejects failed evolutions and keeps the parent for the next
round:

- ``copy``: the evolved prompt equals its parent (after normalising);
- ``refusal``: the teacher refused or apologised ("sorry", "I cannot", ...);
- ``too_short``: fewer than ``--min-words`` words;
- ``template_words``: it leaks the rewriting prompt ("given prompt", "#Rewritten Prompt#").

The card counts eliminations per reason and per mutation. Each row says how its answer
ended (``finish_reasons``, ``truncated``: cut off by ``--max-new-tokens``).

    python -m pipelines.evol_instruct --prompts seeds.jsonl --rounds 3 -o data/evol.jsonl
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations
# at run time to find the `StepInput` parameter.
import argparse
import re
import sys
from collections import Counter

from distilabel.pipeline import Pipeline
from distilabel.steps import FormatTextGenerationSFT, Step, StepInput
from distilabel.steps.tasks import EvolInstruct, TextGeneration
from distilabel.steps.tasks.evol_instruct.utils import MUTATION_TEMPLATES

from alignment.data import normalised, read_prompts, stable_hash
from pipelines import DATA_DIR, quality, runner
from pipelines.llms import finish_column, sft_finish_fields

NAME = "align-evol-instruct"
ANSWER = "answer"  # the answering task
IN_DEPTH = ("CONSTRAINTS", "DEEPENING", "CONCRETIZING", "INCREASED_REASONING_STEPS")
IN_BREADTH = ("BREADTH",)
TEMPLATE_WORDS = re.compile(r"given prompt|rewritten prompt|created prompt|#\w+ prompt#",
                            re.IGNORECASE)


def pick_mutation(instruction: str, seed: int) -> str:
    names = IN_DEPTH + IN_BREADTH
    return names[stable_hash(f"{seed}\n{instruction}") % len(names)]


class SeededEvolInstruct(EvolInstruct):
    """distilabel's ``EvolInstruct`` (one evolution per call) with the mutation picked by
    ``pick_mutation`` instead of numpy's global random state, which depends on batch
    order and restarts with every process."""

    def _apply_random_mutation(self, instruction: str) -> str:
        mutation = pick_mutation(instruction, self.seed)
        return self.mutation_templates[mutation].replace("<PROMPT>", instruction)


def failure_reason(parent: str, evolved: str | None, min_words: int) -> str | None:
    """Why an evolution is eliminated, or None if it survives."""
    evolved = (evolved or "").strip()
    norm = normalised([parent, evolved])
    if evolved and norm[0] == norm[1]:
        return "copy"
    if len(evolved.split()) < min_words:
        return "too_short"
    if quality.is_refusal(evolved) or "sorry" in evolved.lower():
        return "refusal"
    if TEMPLATE_WORDS.search(evolved):
        return "template_words"
    return None


class Eliminate(Step):
    """Keep an evolution that passes ``failure_reason``, else the parent; log the round.

    Input columns:
        - instruction (`str`): the parent
        - evolved_instruction (`str`): this round's evolution
        - evolution (`list[dict]`): the trail so far

    Output columns:
        - instruction (`str`): the survivor (the evolution, or the parent)
        - evolution (`list[dict]`): trail + {round, mutation, evolved, eliminated}
    """

    round: int
    seed: int = 42
    min_words: int = 4

    @property
    def inputs(self) -> list[str]:
        return ["instruction", "evolved_instruction", "evolution"]

    @property
    def outputs(self) -> list[str]:
        return ["instruction", "evolution"]

    def process(self, inputs: StepInput) -> "StepOutput":  # noqa: F821
        for row in inputs:
            parent, evolved = row["instruction"], row["evolved_instruction"]
            reason = failure_reason(parent, evolved, self.min_words)
            row["evolution"] = [*row["evolution"], {
                "round": self.round, "mutation": pick_mutation(parent, self.seed),
                "evolved": evolved, "eliminated": reason}]
            if reason is None:
                row["instruction"] = evolved.strip()
        yield inputs


def build(rows: list[dict], llm, rounds: int = 2, seed: int = 42, min_words: int = 4,
          batch_size: int = 8) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "instruction", "evolution": []}``."""
    with Pipeline(name=NAME, cache_dir=runner.cache_root(),
                  description="Evol-Instruct") as pipeline:
        last = runner.load_rows(rows, batch_size)
        for r in range(1, rounds + 1):
            evolve = SeededEvolInstruct(name=f"evolve_{r}", llm=llm, num_evolutions=1,
                                        seed=seed, input_batch_size=batch_size)
            last = last >> evolve >> Eliminate(name=f"eliminate_{r}", round=r, seed=seed,
                                               min_words=min_words,
                                               input_batch_size=batch_size)
        journal = runner.Journal(columns=["id", "order", "messages", "evolution",
                                          "model_name"], optional=[finish_column(ANSWER)],
                                 input_batch_size=batch_size)
        (last >> TextGeneration(name=ANSWER, llm=llm, input_batch_size=batch_size)
         >> FormatTextGenerationSFT(input_batch_size=batch_size) >> journal)
    return pipeline, journal


def generate(instructions: list[str], llm, *, rounds: int = 2, seed: int = 42,
             min_words: int = 4, batch_size: int = 8, fresh: bool = False,
             ray: bool = False) -> tuple[list[dict], dict]:
    """SFT rows ``{"id", "messages", "evolution", "model_name", "finish_reasons",
    "truncated"}`` and elimination counts.

    ``id`` is the seed instruction's id: one row per seed, holding its final survivor.
    """
    rows = [{"id": runner.text_id(t), "order": [i], "instruction": t, "evolution": []}
            for i, t in enumerate(instructions)]
    out = runner.run(lambda part: build(part, llm, rounds, seed, min_words, batch_size),
                     rows, fresh=fresh, ray=ray)
    for row in out:
        row.update(sft_finish_fields([row.pop(finish_column(ANSWER), None)]))
    trail = [e for r in out for e in r["evolution"]]
    counts = {
        "evolutions": len(trail),
        "eliminated": dict(sorted(Counter(e["eliminated"] for e in trail
                                          if e["eliminated"]).items())),
        "mutations": dict(sorted(Counter(e["mutation"] for e in trail).items())),
        "never_evolved": sum(all(e["eliminated"] for e in r["evolution"]) for r in out),
    }
    return out, counts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate evol-instruct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", default=str(DATA_DIR / "seed_tasks.jsonl"),
                   help="seed instructions (prompt/instruction column or messages)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--rounds", type=int, default=2, help="evolution rounds")
    p.add_argument("--min-words", type=int, default=4,
                   help="evolutions shorter than this are eliminated")
    runner.teacher_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    instructions = read_prompts(args.prompts, args.limit)
    llm = runner.teacher(args)
    rows, counts = generate(instructions, llm, rounds=args.rounds, seed=args.seed,
                            min_words=args.min_words, batch_size=args.concurrency,
                            fresh=args.fresh, ray=args.ray)
    runner.finish(rows, args, "Evol-Instruct data", {
        **runner.generation_info(args, [llm]), "technique": "evol-instruct",
        "rounds": args.rounds, "seed_data": args.prompts, "seeds": len(instructions),
        **counts, "mutation_templates": {k: MUTATION_TEMPLATES[k]
                                         for k in IN_DEPTH + IN_BREADTH}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
