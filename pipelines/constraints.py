"""Prompts with checkable constraints: seed tasks x constraint templates, each prompt
carrying the verifier specs that check it, split into train and held-out by task.

    align generate constraints -o data/constraints/
    -> data/constraints/train.jsonl, data/constraints/heldout.jsonl (+ a card each)

Each row is ``{"id", "prompt", "task_id", "task", "category", "constraints",
"verifiers", "split"}``: ``prompt`` is the task followed by its constraint sentences
("Describe a forest in winter. Answer in at most 20 words."), ``verifiers`` the specs
(``alignment.verifiers``) that decide whether an answer follows them. Tasks are split
before any prompt is made, so no held-out task is ever trained on, in any wording;
constraint types and their parameters are drawn the same way on both sides, so the
held-out set measures whether following a constraint carries over to new tasks.

The shipped tasks (``pipelines/data/constraint_tasks.jsonl``, 155 short open tasks in
nine categories) and templates (``pipelines/data/constraint_templates.json``: 11
format constraints and 6 arithmetic word-problem families checked by ``final_answer``)
are ours. ``--tasks`` and ``--templates`` take your own files of the same shape. No model
is involved, so the same seed always gives the same prompts; ``--dry-run`` prints a few
without writing anything.
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import random
import sys
from pathlib import Path

from alignment.errors import ConfigError, DataError
from pipelines import DATA_DIR

TASKS = DATA_DIR / "constraint_tasks.jsonl"
TEMPLATES = DATA_DIR / "constraint_templates.json"


def read_tasks(path: str | Path) -> list[dict]:
    """Seed tasks: rows with ``task`` (text), and ``id`` and ``category`` when known."""
    from alignment.data import read_rows

    tasks = []
    for i, row in enumerate(read_rows(path), start=1):
        text = row.get("task") or row.get("instruction") or row.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, "expected a non-empty `task` text", row=i, field="task")
        tasks.append({"task_id": str(row.get("id") or f"task_{i:03d}"),
                      "category": str(row.get("category") or "general"), "task": text.strip()})
    if not tasks:
        raise DataError(path, "no tasks")
    ids = [t["task_id"] for t in tasks]
    if len(set(ids)) != len(ids):
        raise DataError(path, "task ids must be unique (the split is by task)", field="id")
    return tasks


def read_templates(path: str | Path) -> dict:
    """The templates file, with every verifier spec checked against the registry."""
    from alignment import verifiers

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "templates file not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("constraints"), list):
        raise DataError(path, "expected an object with a `constraints` list", field="constraints")
    for i, c in enumerate(data["constraints"], start=1):
        for key in ("id", "text", "verifier"):
            if key not in c:
                raise DataError(path, f"constraint {i} has no `{key}`", field=f"constraints.{key}")
        # fill each parameter with its first choice to check the spec's shape once
        example = _fill(c["verifier"], {k: v[0] for k, v in c.get("choices", {}).items()})
        verifiers.check_spec(example, f"constraints[{i}].verifier", path=path)
    return data


def _fill(value, params: dict):
    """``value`` with every "{name}" replaced: a whole "{name}" keeps the value's type."""
    if isinstance(value, dict):
        return {k: _fill(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, params) for v in value]
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in params:
            return params[value[1:-1]]
        return value.format_map({k: _spoken(v) for k, v in params.items()}) if "{" in value else value
    return value


def _spoken(value) -> str:
    if isinstance(value, list):
        quoted = [f'"{v}"' for v in value]
        return ", ".join(quoted[:-1]) + " and " + quoted[-1] if len(quoted) > 1 else quoted[0]
    return str(value)


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def _arithmetic(expr: str, names: dict[str, int]) -> float:
    """The value of ``a + b * c``-style expressions over ``names`` (no eval)."""
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        raise ConfigError(f"math answer `{expr}`: only + - * / over the template's numbers")
    return walk(ast.parse(expr, mode="eval"))


def _math_numbers(rng: random.Random) -> dict[str, int]:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    return {"a": a, "b": b, "c": b + rng.randint(1, 15), "p": a * rng.randint(2, 6),
            "d": rng.randint(1, a + b - 1)}


def constraint_prompt(task: dict, templates: list[dict], rng: random.Random) -> dict:
    """One prompt: ``task`` followed by each template's sentence, with their specs."""
    sentences, specs = [], []
    for t in templates:
        params = {k: rng.choice(v) for k, v in t.get("choices", {}).items()}
        sentences.append(_fill(t["text"], params))
        specs.append(_fill(t["verifier"], params))
    return {"prompt": " ".join([task["task"], *sentences]), "constraints": [t["id"] for t in templates],
            "verifiers": specs}


def math_prompt(family: dict, data: dict, rng: random.Random) -> dict:
    numbers = _math_numbers(rng)
    words = {"name": rng.choice(data.get("names", ["Sam"])),
             "item": rng.choice(data.get("items", ["apples"])), **numbers}
    answer = _arithmetic(family["answer"], numbers)
    answer = int(answer) if float(answer).is_integer() else round(answer, 4)
    text = family["text"].format_map(words)
    instruction = data.get("math_instruction", "")
    return {"prompt": f"{text} {instruction}".strip(), "constraints": ["final_answer"],
            "verifiers": [{"name": "final_answer", "params": {"answer": answer}}],
            "task": text}


def build(tasks: list[dict], data: dict, *, heldout_fraction: float = 0.3,
          per_task: int = 2, heldout_per_task: int = 1, constraints_per_prompt: int = 1,
          math_per_family: int = 12, only: list[str] | None = None,
          seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train rows, held-out rows). Tasks, and math families, are split first."""
    from alignment.data import prompt_id

    if not 0 < heldout_fraction < 1:
        raise ConfigError(f"--heldout-fraction must be between 0 and 1, got {heldout_fraction}")
    templates = [t for t in data["constraints"] if not only or t["id"] in only]
    if only and len(templates) != len(set(only) - {"final_answer"}):
        known = ", ".join(t["id"] for t in data["constraints"])
        raise ConfigError(f"--only {' '.join(only)}: unknown constraint(s); known: {known}, "
                          "final_answer")
    if templates and constraints_per_prompt > len(templates):
        raise ConfigError(f"--constraints-per-prompt {constraints_per_prompt}: only "
                          f"{len(templates)} constraint types to draw from")
    rng = random.Random(seed)
    order = sorted(tasks, key=lambda t: t["task_id"])
    rng.shuffle(order)
    n_held = max(1, round(len(order) * heldout_fraction))
    sides = {"heldout": order[:n_held], "train": order[n_held:]}
    families = list(data.get("math", [])) if not only or "final_answer" in only else []
    rng.shuffle(families)
    n_math_held = round(len(families) * heldout_fraction) if len(families) > 1 else 0
    math_sides = {"heldout": families[:n_math_held], "train": families[n_math_held:]}
    out: dict[str, list[dict]] = {"train": [], "heldout": []}
    for split, side in sides.items():
        k = heldout_per_task if split == "heldout" else per_task
        for task in side if templates else []:
            # different constraint types for the k prompts of one task
            picks = rng.sample(templates, min(len(templates), k * constraints_per_prompt))
            for j in range(0, len(picks) - constraints_per_prompt + 1, constraints_per_prompt):
                row = constraint_prompt(task, picks[j:j + constraints_per_prompt], rng)
                out[split].append({**task, **row, "split": split})
        for family in math_sides[split]:
            count = math_per_family if split == "train" else max(1, math_per_family // 2)
            for _ in range(count):
                row = math_prompt(family, data, rng)
                out[split].append({"task_id": family["id"], "category": "math", **row,
                                   "split": split})
    for split in out:
        seen = set()
        rows = []
        for row in out[split]:
            pid = prompt_id(row["prompt"])
            if pid not in seen:  # two draws can coincide; keep a prompt once
                seen.add(pid)
                rows.append({"id": pid, **row})
        out[split] = rows
    return out["train"], out["heldout"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate constraints", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", "-o", default="data/constraints",
                   help="folder for train.jsonl and heldout.jsonl (default data/constraints)")
    p.add_argument("--tasks", default=str(TASKS), help="seed tasks (.jsonl rows with `task`, "
                   "`id`, `category`; default: the shipped 155)")
    p.add_argument("--templates", default=str(TEMPLATES),
                   help="constraint templates (JSON; default: the shipped file)")
    p.add_argument("--heldout-fraction", type=float, default=0.3,
                   help="fraction of tasks (and math families) held out (default 0.3)")
    p.add_argument("--per-task", type=int, default=2,
                   help="training prompts per training task, each with other constraints")
    p.add_argument("--heldout-per-task", type=int, default=1,
                   help="held-out prompts per held-out task")
    p.add_argument("--constraints-per-prompt", type=int, default=1)
    p.add_argument("--math-per-family", type=int, default=12,
                   help="arithmetic word problems per training family (half per held-out one)")
    p.add_argument("--only", nargs="+", default=None, metavar="ID",
                   help="use only these constraint ids (final_answer for the math problems)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="print a few prompts; write nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    from collections import Counter

    from alignment.data import write_card, write_rows

    args = parser().parse_args(argv)
    for name in ("per_task", "heldout_per_task", "constraints_per_prompt"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    tasks, data = read_tasks(args.tasks), read_templates(args.templates)
    train, heldout = build(tasks, data, heldout_fraction=args.heldout_fraction,
                           per_task=args.per_task, heldout_per_task=args.heldout_per_task,
                           constraints_per_prompt=args.constraints_per_prompt,
                           math_per_family=args.math_per_family, only=args.only, seed=args.seed)
    if args.dry_run:
        for row in train[:3] + heldout[:3]:
            print(f"[{row['split']}] {row['prompt']}\n    checks: {json.dumps(row['verifiers'])}")
        print(f"{len(train)} train and {len(heldout)} held-out prompts (nothing written)")
        return 0
    out = Path(args.output)
    for split, rows in (("train", train), ("heldout", heldout)):
        path = write_rows(rows, out / f"{split}.jsonl")
        write_card(path, f"Prompts with checkable constraints ({split})", {
            "rows": len(rows), "tasks": len({r["task_id"] for r in rows}),
            "split": "by task: no task appears on both sides",
            "constraints": dict(Counter(c for r in rows for c in r["constraints"])),
            "tasks_file": args.tasks, "templates_file": args.templates, "seed": args.seed,
            "heldout_fraction": args.heldout_fraction})
        print(f"{split:>8}: {len(rows)} prompts from {len({r['task_id'] for r in rows})} tasks "
              f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
