"""A judging stage: read ranked rows, run one judge step through the runner's journal,
write the judged rows with their card.
"""

from __future__ import annotations

import time

# rows a judge step takes at a time. Each batch is journalled as it is judged, so a kill
# costs at most one batch; with several responses (and aspects) per row, eight rows are
# still dozens of prompts, enough to fill a model batch or an endpoint's concurrency
ROWS_PER_BATCH = 8


def read_input(path: str, limit: int | None = None) -> list[dict]:
    from alignment.data import load_ranked

    rows = load_ranked(path)
    return rows[:limit] if limit else rows


def run_step(name: str, rows: list[dict], step_factory, fresh: bool = False
             ) -> tuple[list[dict], float]:
    """Run ``load >> step >> journal`` as a distilabel pipeline; returns the rows (input
    order) and the seconds the pipeline took.

    Judging is often the most expensive stage, so it finishes through the same journal
    as the generation pipelines (``pipelines.runner.run``): a killed judge run, started
    again with the same rows and judge, judges only the rows not yet journalled.
    """
    from pipelines import runner

    # the journal keys rows by a unique id; ranked rows may share one (or lack it)
    data = [{**r, "id": f"{i}:{r.get('id')}", "_source_id": r.get("id"), "order": [i]}
            for i, r in enumerate(rows)]
    columns = list(dict.fromkeys(k for r in data for k in r))

    def build(part: list[dict]):
        from distilabel.pipeline import Pipeline

        with Pipeline(name=f"align-{name}", cache_dir=runner.cache_root()) as pipeline:
            step = step_factory()
            outputs = list(step.outputs)
            # rows reach the journal a judge batch at a time (see ROWS_PER_BATCH)
            size = getattr(step, "input_batch_size", None) or ROWS_PER_BATCH
            journal = runner.Journal(columns=columns + [c for c in outputs if c not in columns],
                                     input_batch_size=size)
            runner.load_rows(part, size) >> step >> journal
        return pipeline, journal
    start = time.time()
    out = runner.run(build, data, fresh=fresh)
    seconds = time.time() - start
    restored = []
    for r in out:
        row = {k: v for k, v in r.items() if k not in ("_source_id",)}
        row["id"] = r["_source_id"]
        if row["id"] is None:
            del row["id"]
        restored.append(row)
    return restored, seconds


def write_output(rows: list[dict], output: str, title: str, info: dict) -> str:
    from alignment.data import validate_rows, write_card, write_rows

    validate_rows(rows, "ranked", output)
    path = write_rows(rows, output)
    write_card(path, title, {"rows": len(rows), **info})
    return str(path)
