"""Preference data from seeds: instructions -> N teacher responses -> rating judge -> ranked rows.

    seeds (jsonl/txt) ──► [SelfInstruct ► CleanInstructions]  (optional, --self-instruct)
                     ──► TextGeneration × num_responses (teacher, temperature > 0)
                     ──► RatingJudgeStep (rating-digit probabilities)
                     ──► ranked dataset (docs/schemas.md) + card [+ TRL pairs]

Each response's finish reason is kept (``finish_reasons``, ``truncated``) and the card
counts those cut off by ``--max-new-tokens``; ``--pairs`` leaves them out unless
``--keep-truncated``.

Run it as ``align generate preference -o data/ranked.jsonl`` or
``python -m pipelines.preference --help``; ``run_preference_pipeline`` is the same from
Python. The teacher is the bundled SmolLM2 in-process (batched) unless ``--base-url``
names an OpenAI-compatible server. Every finished row is journalled under
``$ALIGN_HOME/pipelines`` (see ``pipelines/runner.py``), so re-running the same command,
even after a SIGKILL, resumes instead of restarting and writes each row exactly once.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pipelines import DATA_DIR

DEFAULT_SEEDS = DATA_DIR / "seed_prompts.jsonl"


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class PreferenceConfig:
    """Every option of the pipeline, documented once; the CLI is generated from it."""

    output: str = _opt("data/preference.jsonl", "ranked dataset to write (.jsonl, .parquet "
                       "or a folder)", flag="-o")
    seeds: str = _opt(str(DEFAULT_SEEDS), "seed instructions: .jsonl/.parquet rows with an "
                      "`instruction` field, or .txt with one per line")
    num_instructions: int = _opt(16, "instructions to answer (sampled from the seeds, or "
                                 "the cap on generated ones with --self-instruct)")
    self_instruct: bool = _opt(False, "have the teacher write new instructions from the "
                               "seeds (distilabel SelfInstruct) instead of using the seeds")
    instructions_per_seed: int = _opt(4, "instructions SelfInstruct asks for per seed")
    # --model, as in every other pipeline; --teacher, its former name, still works
    model: str = _opt("smollm2", "teacher: bundled name, model folder or hub id; with "
                      "--base-url, the model name the server serves", aliases=("--teacher",))
    base_url: str | None = _opt(None, "OpenAI-compatible endpoint (vLLM, TGI, llama.cpp, "
                                "OpenAI) for the teacher")
    api_key_env: str = _opt("OPENAI_API_KEY", "environment variable holding the API key")
    num_responses: int = _opt(4, "candidate responses per instruction")
    max_new_tokens: int = _opt(96, "cap on tokens per response")
    temperature: float = _opt(0.8, "sampling temperature of the responses")
    top_p: float = _opt(0.95, "nucleus sampling threshold")
    system_prompt: str | None = _opt(None, "system prompt for the teacher's responses")
    batch_size: int = _opt(16, "prompts per batch of the in-process teacher")
    judge: str = _opt("smollm2", "judge model: bundled name, model folder or hub id")
    aspects: list[str] = _opt(("overall",), "judge rubric aspects (overall, or "
                              "instruction_following truthfulness honesty helpfulness)",
                              nargs="+")
    scale: tuple[int, int] = _opt((1, 5), "lowest and highest rating", nargs=2)
    judge_batch_size: int = _opt(8, "(prompt, response) pairs per judge forward pass")
    min_digit_mass: float = _opt(0.0, "withhold verdicts whose rating digits got less "
                                 "probability than this")
    seed: int = _opt(0, "seed for sampling seeds and responses")
    pairs: str | None = _opt(None, "also write TRL preference pairs here")
    pair_strategy: str = _opt("best-worst", "pairing: best-worst, best-random or all")
    keep_truncated: bool = _opt(False, "pair responses cut off by --max-new-tokens too "
                                "(--no-keep-truncated skips them)")
    use_cache: bool = _opt(True, "resume an interrupted identical run from its journal "
                           "(--no-use-cache starts over)")


def load_seeds(path: str | Path | None = None, limit: int | None = None) -> list[str]:
    """Seed instructions: the prompts of a prompt file (``alignment.data.read_prompts``:
    JSONL/JSON/Parquet/CSV rows, or a .txt with one per line), repeats kept."""
    from alignment.data import read_prompts

    return read_prompts(path or DEFAULT_SEEDS, limit, distinct=False)


def select_seeds(cfg: PreferenceConfig) -> list[str]:
    seeds = load_seeds(cfg.seeds)
    if cfg.self_instruct or cfg.num_instructions >= len(seeds):
        return seeds
    return random.Random(cfg.seed).sample(seeds, cfg.num_instructions)


def _teacher_factory(cfg: PreferenceConfig):
    from pipelines.llms import make_llm

    # teacher and judge may run at the same time in two processes: half the cores each
    threads = max(1, (os.cpu_count() or 2) // 2)

    def teacher(**gen):
        return make_llm(cfg.model, cfg.base_url, cfg.api_key_env, batch_size=cfg.batch_size,
                        num_threads=threads, seed=cfg.seed, **gen)
    return teacher, threads


def build_self_instruct(cfg: PreferenceConfig, rows: list[dict]):
    """Phase 1 of --self-instruct: each seed row -> a list of new instructions."""
    from distilabel.pipeline import Pipeline
    from distilabel.steps.tasks import SelfInstruct

    from pipelines.runner import Journal, cache_root, load_rows

    teacher, _ = _teacher_factory(cfg)
    with Pipeline(name="align-preference-instructions", cache_dir=cache_root(),
                  description="seed instructions -> new instructions (SelfInstruct)") as p:
        instruct = SelfInstruct(
            name="self_instruct", num_instructions=cfg.instructions_per_seed,
            llm=teacher(max_new_tokens=160, temperature=0.7, top_p=cfg.top_p),
            input_batch_size=max(cfg.batch_size, 8))
        journal = Journal(name="journal", columns=["id", "order", "input", "instructions"])
        load_rows(rows, max(cfg.batch_size, 8)) >> instruct >> journal
    return p, journal


def build_pipeline(cfg: PreferenceConfig, rows: list[dict]):
    """The distilabel DAG over instruction rows (id, order, instruction); each step loads
    its own model in its own process, and the journal makes a killed run resumable."""
    from distilabel.pipeline import Pipeline
    from distilabel.steps.tasks import TextGeneration

    from pipelines.rating_steps import RatingJudgeStep
    from pipelines.llms import finish_column
    from pipelines.runner import Journal, cache_root, load_rows

    teacher, threads = _teacher_factory(cfg)
    with Pipeline(name="align-preference", cache_dir=cache_root(),
                  description="instructions -> teacher responses -> rating judge") as p:
        respond = TextGeneration(
            name="responses", num_generations=cfg.num_responses, group_generations=True,
            output_mappings={"generation": "generations"},  # grouped: one list per row
            system_prompt=cfg.system_prompt, input_batch_size=max(cfg.batch_size, 8),
            llm=teacher(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                        top_p=cfg.top_p))
        judge = RatingJudgeStep(
            name="judge", judge_model=cfg.judge, aspects=list(cfg.aspects),
            scale=tuple(cfg.scale), judge_batch_size=cfg.judge_batch_size,
            min_digit_mass=cfg.min_digit_mass, num_threads=threads,
            input_batch_size=max(cfg.batch_size, 8))
        extra = ["ratings"] if len(cfg.aspects) > 1 else []
        journal = Journal(name="journal", columns=[
            "id", "order", "instruction", "generations", "model_name", "scores",
            "judge_raw", "judge_digit_mass", "judge", *extra],
            optional=[finish_column(respond.name)])
        load_rows(rows, max(cfg.batch_size, 8)) >> respond >> judge >> journal
    return p, journal


def instructions_for(cfg: PreferenceConfig, seeds: list[str]) -> list[str]:
    """The instructions to answer: the seeds, or (--self-instruct) new ones from them."""
    if not cfg.self_instruct:
        return seeds
    from alignment.data import prompt_id
    from pipelines import runner
    from pipelines.instructions import CleanInstructions

    seed_rows = [{"id": prompt_id(s), "order": i, "input": s}
                 for i, s in enumerate(dict.fromkeys(seeds))]
    got = runner.run(lambda rows: build_self_instruct(cfg, rows), seed_rows,
                     fresh=not cfg.use_cache)
    clean = CleanInstructions(name="clean_instructions", max_instructions=cfg.num_instructions)
    clean.load()
    return [r["instruction"] for r in next(clean.process(got))]


def to_ranked(rows: list[dict], counts: dict) -> list[dict]:
    """distilabel rows -> ranked rows (docs/schemas.md); failed generations are dropped."""
    from alignment.data import prompt_id
    from pipelines.llms import finish_column, finish_fields

    out = []
    for row in rows:
        keep = [i for i, g in enumerate(row["generations"]) if g is not None]
        reasons = row.get(finish_column("responses")) or [None] * len(row["generations"])
        counts["teacher_failures"] += len(row["generations"]) - len(keep)
        if len(keep) < 2:
            counts["rows_dropped_under_2_responses"] += 1
            continue
        ranked = {
            "id": prompt_id(row["instruction"]), "prompt": row["instruction"],
            "responses": [row["generations"][i] for i in keep],
            "models": [row["model_name"]] * len(keep),
            "scores": [row["scores"][i] for i in keep],
            "judge": row["judge"], "judge_raw": [row["judge_raw"][i] for i in keep],
            "source": "align generate preference",
            **finish_fields([reasons[i] for i in keep]),
        }
        if row.get("ratings") is not None:
            ranked["ratings"] = [row["ratings"][i] for i in keep]
        counts["responses"] += len(keep)
        counts["judge_failures"] += sum(s is None for s in ranked["scores"])
        masses = [row["judge_digit_mass"][i] for i in keep]
        counts["low_digit_mass_under_0.5"] += sum(m < 0.5 for m in masses)
        counts["_mass_sum"] += sum(masses)
        out.append(ranked)
    return out


def card_info(cfg: PreferenceConfig, seeds: list[str], counts: dict, seconds: float) -> dict:
    from importlib.metadata import version

    from alignment import __version__

    from alignment.rubrics import RATING_JUDGE_TEMPLATE, RATING_PREFIX, RATING_RUBRICS

    templates = {"responses": "{{ instruction }} (distilabel TextGeneration, chat template "
                              "of the teacher)", "judge": RATING_JUDGE_TEMPLATE,
                 "judge_prefix": RATING_PREFIX,
                 "judge_rubrics": {a: RATING_RUBRICS.get(a, a) for a in cfg.aspects}}
    if cfg.self_instruct:
        templates["self_instruct"] = "distilabel SelfInstruct (self-instruct.jinja2)"
    return {
        "rows": counts["rows"],
        "teacher": {"model": cfg.model, "base_url": cfg.base_url,
                    "generation": {"num_responses": cfg.num_responses,
                                   "max_new_tokens": cfg.max_new_tokens,
                                   "temperature": cfg.temperature, "top_p": cfg.top_p,
                                   "system_prompt": cfg.system_prompt, "seed": cfg.seed}},
        "judge": {"model": cfg.judge, "method": "expected rating from next-token "
                  "probabilities of the rating digits", "aspects": list(cfg.aspects),
                  "scale": list(cfg.scale), "min_digit_mass": cfg.min_digit_mass},
        "prompt_templates": templates,
        "seeds": {"file": cfg.seeds, "used": len(seeds), "self_instruct": cfg.self_instruct},
        "counts": counts,
        "config": asdict(cfg),
        "software": {"distilabel": version("distilabel"), "align": __version__},
        "seconds": round(seconds, 1),
    }


def run_preference_pipeline(output: str | Path | None = None, **options) -> Path:
    """Run the pipeline and write the ranked dataset (and card, and optionally pairs).

    ``options`` are ``PreferenceConfig`` fields; returns the path of the ranked dataset.
    """
    from alignment.data import ranked_to_pairs, validate_rows, write_card, write_rows
    from alignment.errors import ConfigError

    known = {f.name for f in fields(PreferenceConfig)}
    if unknown := sorted(set(options) - known):
        raise ConfigError(f"unknown preference pipeline option(s) {unknown}; "
                          f"known: {sorted(known)}")
    cfg = PreferenceConfig(**options, **({"output": str(output)} if output else {}))
    if cfg.num_responses < 2:
        raise ConfigError("--num-responses must be at least 2 to rank responses")
    start = time.time()
    seeds = select_seeds(cfg)
    from alignment.data import prompt_id
    from pipelines import runner

    instructions = list(dict.fromkeys(instructions_for(cfg, seeds)))
    if not instructions:
        raise ConfigError("no instructions to answer (with --self-instruct: no generated "
                          "instruction survived cleaning); try more seeds, another teacher, "
                          "or run without --self-instruct")
    todo = [{"id": prompt_id(t), "order": i, "instruction": t}
            for i, t in enumerate(instructions)]
    rows = runner.run(lambda r: build_pipeline(cfg, r), todo, fresh=not cfg.use_cache)
    counts = {"instructions": len(rows), "responses": 0, "teacher_failures": 0,
              "judge_failures": 0, "low_digit_mass_under_0.5": 0,
              "rows_dropped_under_2_responses": 0, "_mass_sum": 0.0}
    ranked = validate_rows(to_ranked(rows, counts), "ranked", cfg.output)
    mass = counts.pop("_mass_sum")
    counts["mean_digit_mass"] = round(mass / counts["responses"], 4) if counts["responses"] else None
    counts["rows"] = len(ranked)
    counts.update(runner.truncation_counts(ranked))
    path = write_rows(ranked, cfg.output)
    write_card(path, "align preference dataset", card_info(cfg, seeds, counts, time.time() - start))
    if cfg.pairs:
        pairs, pair_counts = ranked_to_pairs(ranked, cfg.pair_strategy, seed=cfg.seed,
                                             keep_truncated=cfg.keep_truncated)
        write_rows(pairs, cfg.pairs)
        write_card(cfg.pairs, "align preference pairs", {
            "rows": len(pairs), "source": str(path), "strategy": cfg.pair_strategy,
            "keep_truncated": cfg.keep_truncated, "counts": pair_counts, "judge": cfg.judge,
            "teacher": cfg.model})
    print(f"wrote {len(ranked)} ranked rows to {path} ({counts['judge_failures']} judge "
          f"failures, mean digit mass {counts['mean_digit_mass']}, "
          f"{counts['truncated_responses']} of {counts['responses']} responses cut off by "
          f"--max-new-tokens)")
    return path


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="align generate preference", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(PreferenceConfig):
        flags = [f"--{f.name.replace('_', '-')}"] + ([f.metadata["flag"]]
                                                     if "flag" in f.metadata else [])
        kw = {"default": f.default, "help": f.metadata["help"] + " (default: %(default)s)"}
        if f.type == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = {"int": int, "float": float}.get(f.type, None) or (
                int if f.name == "scale" else str)
            if "nargs" in f.metadata:
                kw["nargs"] = f.metadata["nargs"]
        ap.add_argument(*flags, **kw)
        for alias in f.metadata.get("aliases", ()):  # accepted, not advertised
            ap.add_argument(alias, dest=f.name, type=kw.get("type"), help=argparse.SUPPRESS,
                            default=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    run_preference_pipeline(**args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
