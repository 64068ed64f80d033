"""Evol-Instruct (WizardLM): make instructions harder over several rounds, then answer.

Each round applies one mutation per instruction, chosen from a hash of the seed, the
round and the instruction (so a resumed run makes the same choices, and an instruction
that did not change meets another mutation next round): in depth (add constraints,
deepen, concretise, increase reasoning steps) or in breadth (a new, rarer prompt in
the same domain); distilabel's ``EvolInstruct`` templates do the rewriting.

An in-depth evolution replaces the instruction: the chain goes on from it. An in-breadth
one is a different task, not a harder version of this one, so it leaves the chain as it
was and joins a pool of its own: each surviving breadth prompt becomes a row of its own
(``evolution_type: "breadth"``, ``source_id``: the chain's row, ``source_round``),
answered like the chains' final instructions; chain rows say ``evolution_type:
"depth"``. Breadth prompts are not evolved further.

After each round an elimination step rejects failed evolutions and keeps the parent for
the next round:

- ``copy``: the evolved prompt equals its parent (after normalising);
- ``refusal``: the teacher refused or apologised ("sorry", "I cannot", ...);
- ``too_short``: fewer than ``--min-words`` words;
- ``template_words``: it leaks the rewriting prompt ("given prompt", "#Rewritten Prompt#").

The card counts eliminations per reason and per mutation, and the rows of each pool
(a breadth prompt already in the data, as a seed or from another chain, is counted and
dropped). Each row says how its answer
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


def pick_mutation(instruction: str, seed: int, round_: int) -> str:
    names = IN_DEPTH + IN_BREADTH
    return names[stable_hash(f"{seed}\n{round_}\n{instruction}") % len(names)]


class SeededEvolInstruct(EvolInstruct):
    """distilabel's ``EvolInstruct`` (one evolution per call) with the mutation picked by
    ``pick_mutation`` instead of numpy's global random state, which depends on batch
    order and restarts with every process."""

    round: int = 1

    def _apply_random_mutation(self, instruction: str) -> str:
        mutation = pick_mutation(instruction, self.seed, self.round)
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
    """Keep an in-depth evolution that passes ``failure_reason``, else the parent; log the
    round. A surviving in-breadth evolution leaves the instruction as it was: the trail
    entry gives it the id of the row it becomes (``breadth_id``).

    Input columns:
        - instruction (`str`): the parent
        - evolved_instruction (`str`): this round's evolution
        - evolution (`list[dict]`): the trail so far

    Output columns:
        - instruction (`str`): the survivor (the evolution, or the parent)
        - evolution (`list[dict]`): trail + {round, mutation, parent, evolved,
          eliminated, breadth_id}
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
            mutation = pick_mutation(parent, self.seed, self.round)
            breadth = reason is None and mutation in IN_BREADTH
            row["evolution"] = [*row["evolution"], {
                "round": self.round, "mutation": mutation, "parent": parent,
                "evolved": evolved, "eliminated": reason,
                "breadth_id": runner.text_id(evolved.strip()) if breadth else None}]
            if reason is None and not breadth:
                row["instruction"] = evolved.strip()
        yield inputs


def build(rows: list[dict], llm, rounds: int = 2, seed: int = 42, min_words: int = 4,
          batch_size: int = 8, name: str = NAME) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "instruction", "evolution"}``; ``rounds=0`` only answers."""
    with Pipeline(name=name, cache_dir=runner.cache_root(),
                  description="Evol-Instruct") as pipeline:
        last = runner.load_rows(rows, batch_size)
        for r in range(1, rounds + 1):
            evolve = SeededEvolInstruct(name=f"evolve_{r}", llm=llm, num_evolutions=1,
                                        seed=seed, round=r, input_batch_size=batch_size)
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
    """SFT rows ``{"id", "messages", "evolution", "evolution_type", "source_id",
    "source_round", "model_name", "finish_reasons", "truncated"}`` and the counts.

    A chain row (``evolution_type: "depth"``) has its seed instruction's id and holds the
    chain's final survivor; a breadth row has its own prompt's id, one trail entry, and
    points to the chain it came from (``source_id``, ``source_round``).
    """
    rows = [{"id": runner.text_id(t), "order": [i], "instruction": t, "evolution": []}
            for i, t in enumerate(instructions)]
    chains = runner.run(lambda part: build(part, llm, rounds, seed, min_words, batch_size),
                        rows, fresh=fresh, ray=ray)
    pending, sources, duplicates = breadth_rows(chains)
    breadth = runner.run(lambda part: build(part, llm, 0, seed, min_words, batch_size,
                                            name=f"{NAME}-breadth"),
                         pending, fresh=fresh, ray=ray) if pending else []
    for row in chains:
        row.update(evolution_type="depth", source_id=None, source_round=None)
    for row in breadth:
        row.update(evolution_type="breadth", **sources[row["id"]])
    out = chains + breadth
    for row in out:
        row.update(sft_finish_fields([row.pop(finish_column(ANSWER), None)]))
    trail = [e for r in chains for e in r["evolution"]]
    counts = {
        "evolutions": len(trail),
        "eliminated": dict(sorted(Counter(e["eliminated"] for e in trail
                                          if e["eliminated"]).items())),
        "mutations": dict(sorted(Counter(e["mutation"] for e in trail).items())),
        # the chain's instruction is still its seed: every round eliminated or breadth
        "never_evolved": sum(all(e["eliminated"] or e["breadth_id"] for e in r["evolution"])
                             for r in chains),
        "depth_rows": len(chains), "breadth_rows": len(breadth),
        "breadth_duplicates": duplicates,
    }
    return out, counts


def breadth_rows(chains: list[dict]) -> tuple[list[dict], dict[str, dict], int]:
    """The surviving breadth prompts of the chains' trails as rows to answer, each row's
    pointer to its source, and how many were dropped as already in the data."""
    seen = {r["id"] for r in chains}
    rows, sources, duplicates = [], {}, 0
    for chain in chains:
        for entry in chain["evolution"]:
            bid = entry["breadth_id"]
            if bid is None:
                continue
            if bid in seen:
                duplicates += 1
                continue
            seen.add(bid)
            rows.append({"id": bid, "order": [len(rows)],
                         "instruction": entry["evolved"].strip(), "evolution": [entry]})
            sources[bid] = {"source_id": chain["id"], "source_round": entry["round"]}
    return rows, sources, duplicates


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
    print(f"evol-instruct: {counts['depth_rows']} chains over {args.rounds} round(s) "
          f"({counts['never_evolved']} never evolved in depth), "
          f"{counts['breadth_rows']} breadth prompts as rows of their own "
          f"({counts['breadth_duplicates']} already in the data dropped); eliminated: "
          + (", ".join(f"{n} {k}" for k, n in counts["eliminated"].items()) or "none"))
    runner.finish(rows, args, "Evol-Instruct data", {
        **runner.generation_info(args, [llm]), "technique": "evol-instruct",
        "rounds": args.rounds, "seed_data": args.prompts, "seeds": len(instructions),
        "breadth": "in-breadth prompts are rows of their own (evolution_type: breadth, "
                   "source_id, source_round); the chain keeps its instruction",
        **counts, "mutation_templates": {k: MUTATION_TEMPLATES[k]
                                         for k in IN_DEPTH + IN_BREADTH}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
