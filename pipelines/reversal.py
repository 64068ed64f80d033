"""Reversal augmentation: teach a fact in both directions.

A model trained on "A is B" does not learn "B is A" by itself (the reversal curse).
For each fact "A is B" (also was/are/were) the teacher writes the reversed statement,
and each fact becomes four SFT rows:

- "Tell me a fact about A."  -> "A is B."
- "Tell me a fact about B."  -> the reversed statement ("B is A.")
- "Who/What is A?"           -> "A is B."
- "Who/What is B?"           -> the reversed statement

A reversed statement that does not mention both sides is replaced by the template
"B is A." and counted as a parse failure in the card.

    python pipelines/reversal.py --facts facts.jsonl -o data/reversal.jsonl
"""

from __future__ import annotations

import argparse
import re
import sys

from distilabel.pipeline import Pipeline
from distilabel.steps.tasks import TextGeneration

from alignment.errors import DataError
from pipelines import runner

NAME = "align-reversal"
FACT_RE = re.compile(r"^(?P<a>.+?) (?P<verb>is|was|are|were) (?P<b>.+?)\.?$")
TEMPLATE = ("Reverse the fact: rewrite it as one sentence that starts with what comes "
            "after the verb and ends with the subject, keeping its meaning. Reply with "
            "the sentence only.\nFact: {{ fact }}")


def parse_fact(text: str, path: object = "facts", row: int | None = None) -> dict:
    m = FACT_RE.match(text.strip())
    if not m:
        raise DataError(path, f"`{text}` is not of the form 'A is B' (is/was/are/were)",
                        row=row, field="fact")
    return {"a": m["a"], "verb": m["verb"], "b": m["b"]}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _mentions(text: str, part: str) -> bool:
    words = [w for w in re.findall(r"\w+", part.lower()) if len(w) > 3] or [part.lower()]
    return all(w in text.lower() for w in words)


def expand(row: dict) -> tuple[list[dict], bool]:
    """Four SFT rows for one journalled fact; and whether the teacher's reversal failed."""
    a, verb, b = row["a"], row["verb"], row["b"]
    fact = f"{_cap(a)} {verb} {b}."
    rev = (row.get("generation") or "").strip().splitlines()[0:1]
    rev = rev[0].strip() if rev else ""
    failed = not (rev and _mentions(rev, a) and _mentions(rev, b))
    if failed:
        rev = f"{_cap(b)} {verb} {a}."
    wh = "Who" if row.get("person") else "What"
    pairs = [(f"Tell me a fact about {a}.", fact), (f"Tell me a fact about {b}.", rev),
             (f"{wh} {verb} {a}?", fact), (f"{wh} {verb} {b}?", rev)]
    out = []
    for kind, (q, ans) in zip(("statement", "statement_reversed", "qa_forward", "qa_reverse"),
                              pairs):
        out.append({"id": runner.text_id(q), "kind": kind, "fact": fact,
                    "messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": ans}]})
    return out, failed


def build(rows: list[dict], llm, batch_size: int = 8) -> tuple[Pipeline, runner.Journal]:
    with Pipeline(name=NAME, cache_dir=runner.cache_root(),
                  description="reversal augmentation") as pipeline:
        journal = runner.Journal(columns=["id", "order", "a", "verb", "b", "person",
                                          "generation", "model_name"],
                                 input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> TextGeneration(llm=llm, template=TEMPLATE, columns=["fact"],
                           input_batch_size=batch_size)
         >> journal)
    return pipeline, journal


def generate(facts: list[dict], llm, *, batch_size: int = 8, fresh: bool = False,
             ray: bool = False) -> tuple[list[dict], dict]:
    """``facts``: ``{"fact": str, "person": bool?}``. Returns SFT rows and counts."""
    rows = []
    for i, f in enumerate(facts):
        rows.append({"id": runner.text_id(f["fact"]), "order": [i], "fact": f["fact"],
                     "person": bool(f.get("person", False)), **parse_fact(f["fact"], row=i + 1)})
    out, failures = [], 0
    for row in runner.run(lambda part: build(part, llm, batch_size), rows, fresh=fresh,
                          ray=ray):
        expanded, failed = expand(row)
        out += expanded
        failures += failed
    return out, {"facts": len(facts), "reversal_parse_failures": failures}


def read_facts(path: str) -> list[dict]:
    from alignment.data import read_rows

    facts = []
    for i, row in enumerate(read_rows(path), start=1):
        if not isinstance(row.get("fact"), str):
            raise DataError(path, "expected a `fact` string like 'Paris is the capital of "
                                  "France'", row=i, field="fact")
        parse_fact(row["fact"], path, i)
        facts.append(row)
    return facts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate reversal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--facts", default=str(runner.DATA_DIR / "seed_facts.jsonl"),
                   help="JSONL of {\"fact\": \"A is B\", \"person\": true?} (default: shipped)")
    runner.teacher_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    llm = runner.teacher(args)
    rows, counts = generate(read_facts(args.facts), llm, batch_size=args.concurrency,
                            fresh=args.fresh, ray=args.ray)
    runner.finish(rows, args, "Reversal-augmented facts", {
        **runner.generation_info(args, [llm]), "technique": "reversal augmentation",
        "seed_data": args.facts, "prompt_template": TEMPLATE, **counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
