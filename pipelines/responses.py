"""Candidate responses for AI feedback: N responses per prompt from one or more models.

Each model answers every prompt ``--n`` times; the rows follow the ranked schema of
docs/schemas.md with no verdict yet (``scores`` all null, ``judge`` empty), ready for
the rating and ranking pipelines. ``finish_reasons`` says how each response ended and
``truncated`` flags those the token limit cut off. Other fields of the prompts file's
rows (``verifiers``, ``task``, ``source``, ``split``, ...) are copied into the rows
unchanged, so prompts with verifier specs go straight on to ``align generate verify``.

    python -m pipelines.responses --prompts prompts.jsonl --model smollm2 --n 2 -o cands.jsonl
    python -m pipelines.responses --base-url http://localhost:8000/v1 \\
        --model Qwen/Qwen2.5-7B-Instruct --model meta-llama/Llama-3.1-8B-Instruct -o cands.jsonl
"""

from __future__ import annotations

import argparse
import sys

from distilabel.pipeline import Pipeline
from distilabel.steps import GroupColumns
from distilabel.steps.tasks import TextGeneration

from alignment.data import read_prompt_rows
from pipelines import DATA_DIR, runner
from pipelines.llms import finish_column, finish_fields

NAME = "align-responses"
# the columns this pipeline writes: a prompts file's own (a ranked file read as prompts)
# describe other responses, so they are not copied
OWN_COLUMNS = ("id", "prompt", "responses", "models", "scores", "judge", "judge_raw",
               "ratings", "rationales", "ranks", "finish_reasons", "truncated",
               "verifier_results")


def task_name(i: int) -> str:
    """The generation task of the ``i``-th model."""
    return f"respond_{i}"


def build(rows: list[dict], llms: list, n: int = 2, batch_size: int = 8
          ) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "instruction"}`` fan out to one task per model, then regroup."""
    with Pipeline(name=NAME, cache_dir=runner.cache_root(),
                  description="candidate responses per prompt") as pipeline:
        load = runner.load_rows(rows, batch_size)
        tasks = [TextGeneration(name=task_name(i), llm=llm, num_generations=n,
                                group_generations=True, input_batch_size=batch_size)
                 for i, llm in enumerate(llms)]
        group = GroupColumns(columns=["generation", "model_name"],
                             input_batch_size=batch_size)
        journal = runner.Journal(columns=["id", "order", "instruction", "grouped_generation",
                                          "grouped_model_name"],
                                 optional=[finish_column(t.name) for t in tasks],
                                 input_batch_size=batch_size)
        load >> tasks >> group >> journal
    return pipeline, journal


def to_ranked(row: dict, extra: dict | None = None) -> dict:
    """A journalled row -> the ranked schema, responses in model order, after the prompt
    row's ``extra`` fields."""
    responses, models, reasons = [], [], []
    for i, (texts, model) in enumerate(zip(row["grouped_generation"],
                                           row["grouped_model_name"])):
        responses += list(texts)
        models += [model] * len(texts)
        # distilabel leaves the column out when the model's call failed
        reasons += row.get(finish_column(task_name(i))) or [None] * len(texts)
    extra = {k: v for k, v in (extra or {}).items() if k not in OWN_COLUMNS}
    return {"id": row["id"], "prompt": row["instruction"], **extra, "responses": responses,
            "models": models, "scores": [None] * len(responses), "judge": "",
            "judge_raw": [""] * len(responses), **finish_fields(reasons)}


def generate(prompts: list[str], llms: list, *, n: int = 2, batch_size: int = 8,
             fresh: bool = False, ray: bool = False,
             extra: list[dict] | None = None) -> list[dict]:
    """Ranked rows (unscored) with ``n`` responses from each of ``llms`` per prompt;
    ``extra`` holds each prompt's other fields, copied into its row."""
    rows = [{"id": runner.text_id(p), "order": [i], "instruction": p}
            for i, p in enumerate(prompts)]
    carried = dict(zip((r["id"] for r in rows), extra or []))
    done = runner.run(lambda part: build(part, llms, n, batch_size), rows, fresh=fresh, ray=ray)
    return [to_ranked(r, carried.get(r["id"])) for r in done]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate responses", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", default=str(DATA_DIR / "seed_tasks.jsonl"),
                   help="prompts file (prompt/instruction column or messages); the rows' "
                        "other fields, such as verifiers, are copied into the output")
    p.add_argument("--limit", type=int, default=None, help="use the first N prompts")
    p.add_argument("--n", type=int, default=2, help="responses per prompt per model")
    runner.teacher_args(p, multi_model=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    models = args.model or ["smollm2"]
    if len(set(models)) != len(models):
        from alignment.errors import ConfigError

        raise ConfigError("--model is repeated with the same name; give each model once")
    prompt_rows = read_prompt_rows(args.prompts, args.limit)
    prompts = [r["prompt"] for r in prompt_rows]
    llms = [runner.teacher(args, m) for m in models]
    rows = generate(prompts, llms, n=args.n, batch_size=args.concurrency, fresh=args.fresh,
                    ray=args.ray, extra=prompt_rows)
    runner.finish(rows, args, "Candidate responses (unscored)", {
        **runner.generation_info(args, llms), "technique": "candidate responses",
        "responses_per_model": args.n, "seed_data": args.prompts, "prompts": len(prompts)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
