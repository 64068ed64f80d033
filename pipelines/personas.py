"""Persona-driven prompts: the same request written by many different people.

A list of personas (who is asking: a dairy farmer, a first-year law student, a retired
bus driver reading about the universe...) is crossed with task templates (what they
want: a question, a task done for them, a word problem, a plan...). Each pair becomes a
request to a model: "Here is a person: ... Write a question this person would ask ...".
Varying the asker varies the vocabulary, the level and the situation of the prompts far
more than rewording one instruction does.

    align generate personas --num-prompts 200 -o data/persona_requests.jsonl
    align generate personas --teacher --num-prompts 200 -o data/persona_prompts.jsonl
    align generate personas --dry-run          # print a few, write nothing

Without ``--teacher`` no model is involved: each row holds the ``request``, to send to a
model of your choice. With ``--teacher`` the teacher (``--model``, or ``--base-url``
for an endpoint) turns each request into the concrete ``prompt`` that person would
write, through the journalled runner, so a killed run resumes. Every row carries
``persona_id`` and ``template_id``, with the persona's ``domain`` and ``expertise``.

Pairs are drawn with ``--seed``: every persona is used once before any is used twice,
each time with a template it has not had, so ``--num-prompts`` up to personas x
templates gives distinct pairs. The same seed draws the same pairs.

The shipped personas (``pipelines/data/personas.jsonl``: 315, three per domain and
expertise level, 21 domains, five levels novice/hobbyist/student/professional/expert,
each with a tone) and templates (``pipelines/data/persona_templates.jsonl``: 12) are
ours. ``--personas`` and ``--templates`` take your own files of the same shape.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
from collections import Counter

from alignment.errors import ConfigError, DataError
from pipelines import DATA_DIR

NAME = "align-personas"
TEACH = "write_prompt"  # the teacher's task
PERSONAS = DATA_DIR / "personas.jsonl"
TEMPLATES = DATA_DIR / "persona_templates.jsonl"
EXPERTISE = ("novice", "hobbyist", "student", "professional", "expert")
PLACEHOLDERS = ("domain", "expertise")  # what a template's text may name
REQUEST_HEAD = "Here is a person:"
REQUEST = (REQUEST_HEAD + "\n{persona}\n\nWrite {task}. Write it as this person would, "
           "in their own words and at their level of knowledge, as the message they would "
           "send to an AI assistant. Reply with the message only.")


# ---------------------------------------------------------------- reading the lists

def _text(row: dict, key: str, path, i: int, *, required: bool) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, f"expected a non-empty `{key}` text, got {value!r}"[:200],
                        row=i, field=key)
    return value.strip()


def read_personas(path=PERSONAS) -> list[dict]:
    """Personas: rows with ``id`` and ``persona`` (text), and ``domain``, ``expertise``
    (one of ``EXPERTISE``) and ``tone`` when known. Ids and texts must be unique."""
    from alignment.data import read_rows

    out, ids, texts = [], {}, {}
    for i, row in enumerate(read_rows(path), start=1):
        if not isinstance(row, dict):
            raise DataError(path, "expected an object with `id` and `persona`", row=i)
        pid = row.get("id")
        if isinstance(pid, int) and not isinstance(pid, bool):
            pid = str(pid)
        pid = _text({"id": pid}, "id", path, i, required=True)
        text = _text(row, "persona", path, i, required=True)
        expertise = _text(row, "expertise", path, i, required=False)
        if expertise is not None and expertise not in EXPERTISE:
            raise DataError(path, f"`{expertise}` is not an expertise level; use one of "
                                  f"{', '.join(EXPERTISE)}, or leave it out", row=i,
                            field="expertise")
        for seen, key, value in ((ids, "id", pid), (texts, "persona", text)):
            if value in seen:
                raise DataError(path, f"the same {key} as row {seen[value]}; each persona "
                                      "once", row=i, field=key)
            seen[value] = i
        out.append({"persona_id": pid, "persona": text,
                    "domain": _text(row, "domain", path, i, required=False) or "general",
                    "expertise": expertise or "unspecified",
                    "tone": _text(row, "tone", path, i, required=False)})
    if not out:
        raise DataError(path, "no personas in the file")
    return out


def read_templates(path=TEMPLATES) -> list[dict]:
    """Task templates: rows with ``id`` and ``text``, the thing to write ("a question this
    person would ask about ..."), which may name ``{domain}`` and ``{expertise}``."""
    from alignment.data import read_rows

    out, ids = [], set()
    for i, row in enumerate(read_rows(path), start=1):
        tid = _text(row if isinstance(row, dict) else {}, "id", path, i, required=True)
        text = _text(row, "text", path, i, required=True)
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as e:
            raise DataError(path, f"unbalanced braces ({e})", row=i, field="text") from None
        if unknown := names - set(PLACEHOLDERS):
            raise DataError(path, f"unknown placeholder(s) {sorted(unknown)}; a template may "
                                  f"name {{domain}} and {{expertise}}", row=i, field="text")
        if tid in ids:
            raise DataError(path, f"template id `{tid}` appears twice", row=i, field="id")
        ids.add(tid)
        out.append({"template_id": tid, "text": text})
    if not out:
        raise DataError(path, "no templates in the file")
    return out


# ---------------------------------------------------------------- requests

def draw(personas: list[dict], templates: list[dict], n: int, seed: int = 0
         ) -> list[tuple[dict, dict]]:
    """``n`` distinct (persona, template) pairs: rounds over the personas in a seeded
    order, each round giving every persona a template it has not had yet."""
    most = len(personas) * len(templates)
    if not 1 <= n <= most:
        raise ConfigError(f"--num-prompts {n}: choose 1 to {most} ({len(personas)} personas "
                          f"x {len(templates)} templates)")
    rng = random.Random(seed)
    orders = [rng.sample(range(len(templates)), len(templates)) for _ in personas]
    pairs: list[tuple[dict, dict]] = []
    for r in range(len(templates)):
        for p in rng.sample(range(len(personas)), len(personas)):
            if len(pairs) == n:
                return pairs
            pairs.append((personas[p], templates[orders[p][r]]))
    return pairs


def request(persona: dict, template: dict) -> str:
    task = template["text"].format(domain=persona["domain"], expertise=persona["expertise"])
    return REQUEST.format(persona=persona["persona"], task=task)


def build_requests(personas: list[dict], templates: list[dict], n: int,
                   seed: int = 0) -> list[dict]:
    """Rows ``{"id", "persona_id", "template_id", "domain", "expertise", "tone",
    "persona", "request"}``; ``id`` is the request's text id."""
    from pipelines.runner import text_id

    rows = []
    for persona, template in draw(personas, templates, n, seed):
        text = request(persona, template)
        rows.append({"id": text_id(text), **{k: persona[k] for k in (
            "persona_id", "domain", "expertise", "tone")},
            "template_id": template["template_id"], "persona": persona["persona"],
            "request": text})
    return rows


# ---------------------------------------------------------------- teacher

def build(rows: list[dict], llm, batch_size: int = 8):
    """The teacher pipeline over rows ``{"id", "order", "instruction"}`` (the requests)."""
    from distilabel.pipeline import Pipeline
    from distilabel.steps.tasks import TextGeneration

    from pipelines import runner
    from pipelines.llms import finish_column

    with Pipeline(name=NAME, cache_dir=runner.cache_root(),
                  description="persona-driven prompts") as pipeline:
        journal = runner.Journal(columns=["id", "order", "generation", "model_name"],
                                 optional=[finish_column(TEACH)], input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> TextGeneration(name=TEACH, llm=llm, input_batch_size=batch_size) >> journal)
    return pipeline, journal


def teach(requests: list[dict], llm, *, batch_size: int = 8, fresh: bool = False,
          ray: bool = False) -> tuple[list[dict], dict]:
    """The requests with the teacher's ``prompt`` (cleaned of quotes and list marks);
    ``id`` becomes the prompt's text id. Empty replies and repeated prompts are dropped
    and counted."""
    from pipelines import runner
    from pipelines.instructions import clean_instruction
    from pipelines.llms import finish_column, sft_finish_fields

    inputs = [{"id": r["id"], "order": [i], "instruction": r["request"]}
              for i, r in enumerate(requests)]
    done = {r["id"]: r for r in runner.run(lambda part: build(part, llm, batch_size),
                                           inputs, fresh=fresh, ray=ray)}
    out, seen, counts = [], set(), Counter(empty_prompts=0, duplicate_prompts=0)
    for row in requests:
        got = done.get(row["id"]) or {}
        prompt = clean_instruction(got.get("generation") or "")
        if not prompt:
            counts["empty_prompts"] += 1
            continue
        pid = runner.text_id(prompt)
        if pid in seen:
            counts["duplicate_prompts"] += 1
            continue
        seen.add(pid)
        out.append({**row, "id": pid, "request_id": row["id"], "prompt": prompt,
                    "model_name": got.get("model_name"),
                    **sft_finish_fields([got.get(finish_column(TEACH))])})
    return out, dict(counts)


# ---------------------------------------------------------------- command line

def parser() -> argparse.ArgumentParser:
    from pipelines import runner

    p = argparse.ArgumentParser(prog="align generate personas", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--personas", default=str(PERSONAS),
                   help="personas (.jsonl rows with `id`, `persona`, and optionally `domain`, "
                        "`expertise`, `tone`; default: the shipped 315)")
    p.add_argument("--templates", default=str(TEMPLATES),
                   help="task templates (.jsonl rows with `id`, `text`; default: the shipped 12)")
    p.add_argument("--num-prompts", type=int, default=100, help="rows to write (default 100)")
    p.add_argument("--domain", nargs="+", default=None, help="use only these domains")
    p.add_argument("--expertise", nargs="+", default=None, choices=EXPERTISE,
                   help="use only these expertise levels")
    p.add_argument("--teacher", action="store_true",
                   help="have the teacher (--model / --base-url) write each request's prompt; "
                        "without it no model loads and the rows hold the requests")
    runner.teacher_args(p)
    # this pipeline can run without a model, so its dry run previews instead of writing
    for action in p._actions:
        if action.dest == "output":
            action.required, action.default = False, None
        elif action.dest == "dry_run":
            action.help = ("print a few rows and the counts, write nothing (with --teacher: "
                           "on the deterministic fake teacher, no model loaded)")
    return p


def select(personas: list[dict], domains: list[str] | None,
           levels: list[str] | None) -> list[dict]:
    if domains:
        known = sorted({p["domain"] for p in personas})
        if unknown := set(domains) - set(known):
            raise ConfigError(f"--domain {' '.join(sorted(unknown))}: no such domain in the "
                              f"personas; known: {', '.join(known)}")
        personas = [p for p in personas if p["domain"] in domains]
    if levels:
        personas = [p for p in personas if p["expertise"] in levels]
    if not personas:
        raise ConfigError("no persona matches --domain and --expertise together")
    return personas


def preview(rows: list[dict], total_personas: int) -> None:
    for row in rows[:4]:
        print(f"[{row['persona_id']} x {row['template_id']}]")
        print("  " + row["request"].replace("\n", "\n  "))
        if "prompt" in row:
            print(f"  -> prompt: {row['prompt']}")
        print()
    print(f"{len(rows)} rows from {len({r['persona_id'] for r in rows})} of {total_personas} "
          f"personas, {len({r['template_id'] for r in rows})} templates (nothing written)")
    for key in ("domain", "expertise", "template_id"):
        counts = Counter(r[key] for r in rows).most_common()
        print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in counts))


def main(argv: list[str] | None = None) -> int:
    from pipelines import runner

    args = parser().parse_args(argv)
    if not args.dry_run and not args.output:
        raise ConfigError("give --output FILE (or --dry-run to print a preview)")
    personas = read_personas(args.personas)
    templates = read_templates(args.templates)
    chosen = select(personas, args.domain, args.expertise)
    rows = build_requests(chosen, templates, args.num_prompts, args.seed)
    counts, llms = {}, []
    if args.teacher:
        llm = runner.teacher(args)
        llms = [llm]
        rows, counts = teach(rows, llm, batch_size=args.concurrency, fresh=args.fresh,
                             ray=args.ray)
    if args.dry_run:
        preview(rows, len(chosen))
        return 0
    info = {"technique": "persona-driven prompts", "personas_file": args.personas,
            "templates_file": args.templates, "personas": len(chosen),
            "templates": [t["template_id"] for t in templates], "request_template": REQUEST,
            "seed": args.seed, "num_prompts": args.num_prompts,
            "domains": dict(Counter(r["domain"] for r in rows)),
            "expertise": dict(Counter(r["expertise"] for r in rows)), **counts}
    if args.teacher:
        info.update(runner.generation_info(args, llms))
    runner.finish(rows, args, "Persona-driven prompts" if args.teacher else
                  "Persona-driven prompt requests", info,
                  text_of=None if args.teacher else (lambda r: r["request"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
