"""Candidate responses for AI feedback: N responses per prompt from one or more models.

Each model answers every prompt ``--n`` times; the rows follow the ranked schema of
docs/schemas.md with no verdict yet (``scores`` all null, ``judge`` empty), ready for
the rating and ranking pipelines.

    python pipelines/responses.py --prompts prompts.jsonl --model smollm2 --n 2 -o cands.jsonl
    python pipelines/responses.py --base-url http://localhost:8000/v1 \\
        --model Qwen/Qwen2.5-7B-Instruct --model meta-llama/Llama-3.1-8B-Instruct -o cands.jsonl
"""

from __future__ import annotations

import argparse
import sys

from distilabel.pipeline import Pipeline
from distilabel.steps import GroupColumns
from distilabel.steps.tasks import TextGeneration

from pipelines import runner

NAME = "align-responses"


def build(rows: list[dict], llms: list, n: int = 2, batch_size: int = 8
          ) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "instruction"}`` fan out to one task per model, then regroup."""
    with Pipeline(name=NAME, cache_dir=runner.cache_root(),
                  description="candidate responses per prompt") as pipeline:
        load = runner.load_rows(rows, batch_size)
        tasks = [TextGeneration(name=f"respond_{i}", llm=llm, num_generations=n,
                                group_generations=True, input_batch_size=batch_size)
                 for i, llm in enumerate(llms)]
        group = GroupColumns(columns=["generation", "model_name"],
                             input_batch_size=batch_size)
        journal = runner.Journal(columns=["id", "order", "instruction", "grouped_generation",
                                          "grouped_model_name"], input_batch_size=batch_size)
        load >> tasks >> group >> journal
    return pipeline, journal


def to_ranked(row: dict) -> dict:
    """A journalled row -> the ranked schema, responses in model order."""
    responses, models = [], []
    for texts, model in zip(row["grouped_generation"], row["grouped_model_name"]):
        responses += list(texts)
        models += [model] * len(texts)
    return {"id": row["id"], "prompt": row["instruction"], "responses": responses,
            "models": models, "scores": [None] * len(responses), "judge": "",
            "judge_raw": [""] * len(responses)}


def generate(prompts: list[str], llms: list, *, n: int = 2, batch_size: int = 8,
             fresh: bool = False, ray: bool = False) -> list[dict]:
    """Ranked rows (unscored) with ``n`` responses from each of ``llms`` per prompt."""
    rows = [{"id": runner.text_id(p), "order": [i], "instruction": p}
            for i, p in enumerate(prompts)]
    done = runner.run(lambda part: build(part, llms, n, batch_size), rows, fresh=fresh, ray=ray)
    return [to_ranked(r) for r in done]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate responses", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", default=str(runner.DATA_DIR / "seed_tasks.jsonl"),
                   help="prompts file (prompt/instruction column or messages)")
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
    prompts = runner.read_prompts(args.prompts, args.limit)
    llms = [runner.teacher(args, m) for m in models]
    rows = generate(prompts, llms, n=args.n, batch_size=args.concurrency, fresh=args.fresh,
                    ray=args.ray)
    runner.finish(rows, args, "Candidate responses (unscored)", {
        **runner.generation_info(args, llms), "technique": "candidate responses",
        "responses_per_model": args.n, "seed_data": args.prompts, "prompts": len(prompts)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
