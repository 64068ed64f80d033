"""Reversal augmentation: teach a fact in both directions.

A model trained on "A is B" does not learn "B is A" by itself (the reversal curse).
For each fact "A is B" (also was/are/were) the teacher writes the reversed statement,
and each fact becomes four SFT rows:

- "Tell me a fact about A."  -> "A is B."
- "Tell me a fact about B."  -> the reversed statement ("B is A.")
- "Who/What is A?"           -> "A is B."
- "Who/What is B?"           -> the reversed statement

A reversed statement is kept only when it starts with B (a leading "The", "A" or "An",
case and punctuation aside) and then names A; any other is replaced by the template
"B is A." and counted in the card, by why it was refused: it still starts with the
subject (the fact unreversed), it misses a side, or something comes before B. The
teacher sees three worked reversals as earlier turns of the conversation first: decoding
greedily, the bundled 135M teacher then reverses 40 of 48 facts (the shipped seed and
fictitious ones), against 4 of 48 with the bare instruction; an example written into the
prompt itself it copies instead of following.

The rows answered with the teacher's reversal say how it ended (``finish_reasons``,
``truncated``: cut off by ``--max-new-tokens``); the other answers are not generated, and
their ``finish_reasons`` is empty.

    python pipelines/reversal.py --facts facts.jsonl -o data/reversal.jsonl
"""

from __future__ import annotations

import argparse
import re
import sys

from distilabel.pipeline import Pipeline
from distilabel.steps.tasks import TextGeneration
from jinja2 import Template

from alignment.errors import DataError
from pipelines import runner
from pipelines.llms import finish_column, sft_finish_fields

NAME = "align-reversal"
REVERSE = "reverse"  # the reversing task
FACT_RE = re.compile(r"^(?P<a>.+?) (?P<verb>is|was|are|were) (?P<b>.+?)\.?$")
TEMPLATE = ("Reverse the fact: rewrite it as one sentence that starts with what comes "
            "after the verb and ends with the subject, keeping its meaning. Reply with "
            "the sentence only.\nFact: {{ fact }}")
# worked reversals, shown as earlier chat turns; none of them is a shipped seed fact
EXAMPLES = (
    ("Marie Curie was the first woman to win a Nobel Prize",
     "The first woman to win a Nobel Prize was Marie Curie."),
    ("Lima is the capital of Peru", "The capital of Peru is Lima."),
    ("Wolfgang Amadeus Mozart was the composer of The Magic Flute",
     "The composer of The Magic Flute was Wolfgang Amadeus Mozart."),
)
_ARTICLES = ("the", "a", "an")
# why a teacher's reversal was refused -> the card's count of it
REJECTIONS = {"subject_first": "reversal_rejected_subject_first",
              "missing_side": "reversal_rejected_missing_side",
              "text_before_object": "reversal_rejected_text_before_object"}


def parse_fact(text: str, path: object = "facts", row: int | None = None) -> dict:
    m = FACT_RE.match(text.strip())
    if not m:
        raise DataError(path, f"`{text}` is not of the form 'A is B' (is/was/are/were)",
                        row=row, field="fact")
    return {"a": m["a"], "verb": m["verb"], "b": m["b"]}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _words(text: str) -> list[str]:
    """Lowercase words, any leading article dropped: what the comparison sees, so case,
    an article and punctuation (quotes, commas, a final stop) do not matter."""
    words = re.findall(r"\w+", text.lower())
    return words[1:] if words[:1] and words[0] in _ARTICLES else words


def _find(words: list[str], part: list[str]) -> int:
    """Where ``part`` first occurs in ``words`` as a run of whole words, or -1."""
    for i in range(len(words) - len(part) + 1):
        if words[i:i + len(part)] == part:
            return i
    return -1


def check_reversal(text: str, a: str, b: str) -> str | None:
    """None when ``text`` reverses "A verb B": it starts with B and names A after it.
    Otherwise why not: ``subject_first`` (A still comes before B: not reversed),
    ``missing_side`` (A or B is not there word for word) or ``text_before_object``."""
    words, a_words, b_words = _words(text), _words(a), _words(b)
    if words[:len(b_words)] == b_words and _find(words[len(b_words):], a_words) >= 0:
        return None
    if words[:len(a_words)] == a_words:
        return "subject_first"
    at_a, at_b = _find(words, a_words), _find(words, b_words)
    if at_a < 0 or at_b < 0 or at_b == 0:  # at_b 0: A only inside B, never named
        return "missing_side"
    return "subject_first" if at_a < at_b else "text_before_object"


class ReverseFact(TextGeneration):
    """Reverses a fact, after the worked ``EXAMPLES`` shown as earlier chat turns.

    A 135M teacher given the examples inside its one prompt answers with an example's
    reversal instead of its own fact; as earlier turns of the conversation it follows
    them.

    Input columns:
        - fact (`str`): the fact, "A is B".

    Output columns:
        - generation (`str`): the teacher's reversed statement.
        - model_name (`str`): the teacher's name.

    Runtime parameters: those of ``TextGeneration``.

    Examples:
        ```python
        ReverseFact(llm=llm, template=TEMPLATE, columns=["fact"])
        ```
    """

    def format_input(self, input: dict) -> list[dict]:
        messages = super().format_input(input)
        prompt = Template(TEMPLATE)
        shots = []
        for fact, reversed_fact in EXAMPLES:
            shots += [{"role": "user", "content": prompt.render(fact=fact)},
                      {"role": "assistant", "content": reversed_fact}]
        return messages[:-1] + shots + messages[-1:]  # after any system prompt


def expand(row: dict) -> tuple[list[dict], str | None]:
    """Four SFT rows for one journalled fact; and why the teacher's reversal was refused
    (see ``check_reversal``), None when it was kept."""
    a, verb, b = row["a"], row["verb"], row["b"]
    fact = f"{_cap(a)} {verb} {b}."
    rev = (row.get("generation") or "").strip().splitlines()[0:1]
    rev = rev[0].strip().strip("\"'*`“”‘’ ") if rev else ""
    failed = check_reversal(rev, a, b)
    if failed:
        rev = f"{_cap(b)} {verb} {a}."
    else:
        rev = _cap(rev) if rev[-1:] in ".!?" else _cap(rev) + "."
    wh = "Who" if row.get("person") else "What"
    pairs = [(f"Tell me a fact about {a}.", fact), (f"Tell me a fact about {b}.", rev),
             (f"{wh} {verb} {a}?", fact), (f"{wh} {verb} {b}?", rev)]
    reason = row.get(finish_column(REVERSE))
    out = []
    for kind, (q, ans) in zip(("statement", "statement_reversed", "qa_forward", "qa_reverse"),
                              pairs):
        written = kind in ("statement_reversed", "qa_reverse") and not failed  # by the teacher
        out.append({"id": runner.text_id(q), "kind": kind, "fact": fact,
                    "messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": ans}],
                    **sft_finish_fields([reason] if written else [])})
    return out, failed


def build(rows: list[dict], llm, batch_size: int = 8) -> tuple[Pipeline, runner.Journal]:
    with Pipeline(name=NAME, cache_dir=runner.cache_root(),
                  description="reversal augmentation") as pipeline:
        journal = runner.Journal(columns=["id", "order", "a", "verb", "b", "person",
                                          "generation", "model_name"],
                                 optional=[finish_column(REVERSE)], input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> ReverseFact(name=REVERSE, llm=llm, template=TEMPLATE, columns=["fact"],
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
    out, counts = [], {"facts": len(facts), "reversal_parse_failures": 0,
                       **dict.fromkeys(REJECTIONS.values(), 0)}
    for row in runner.run(lambda part: build(part, llm, batch_size), rows, fresh=fresh,
                          ray=ray):
        expanded, failed = expand(row)
        out += expanded
        if failed:
            counts["reversal_parse_failures"] += 1
            counts[REJECTIONS[failed]] += 1
    return out, counts


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
        "seed_data": args.facts, "prompt_template": TEMPLATE,
        "worked_examples": [f"{fact} -> {rev}" for fact, rev in EXAMPLES], **counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
