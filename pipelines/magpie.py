"""Magpie: instructions drawn from an aligned model given nothing but the text its chat
template puts before a user message, then (optionally) the model's answers.

1. Each request sends the model the template's user-turn
   prefix (for ChatML ``<|im_start|>user\\n``; read off the tokenizer's chat template,
   see ``pipelines.llms.pre_query_prompt``), so it writes a user's query itself
   (distilabel's ``Magpie`` task, instructions only). ``--system-prompt`` puts a system
   turn first to steer the topic. Endpoints get the prefix as raw text on
   ``/v1/completions``, since a chat request always opens an assistant turn.
2. The candidates are filtered, each count in the card (``instruction_filters``): empty,
   template leaks (a chat-template special token such as ``<|im_start|>``, or a role
   marker such as ``assistant`` or ``user:`` at the start or on a line of its own), cut
   off by ``--query-max-tokens``, exact duplicates (normalised) and near duplicates
   (MinHash Jaccard at least ``--near-threshold``).
3. Requests go out in rounds until ``--num-instructions`` instructions pass the filters:
   the first round asks for that many, each later one for the shortfall scaled by the
   share kept so far (at most four times the shortfall), and the filters see every
   candidate of every round, so a duplicate of an earlier round's instruction is dropped
   too. Rounds stop when the target is reached (the surplus of the last round is dropped
   and counted), when a round adds no instruction (the model has run dry at these
   settings), or after ``--max-rounds``; the run prints each round and the reason.
4. The teacher answers each kept instruction (``TextGeneration``) unless ``--no-answers``,
   which writes the instructions alone as prompts.

Both stages are distilabel pipelines with their own journal, so a killed run resumes at
the stage and row where it stopped.

    align generate magpie --num-instructions 50 -o data/magpie.jsonl
    align generate magpie --base-url http://127.0.0.1:8000/v1 --model smollm2 -o m.jsonl
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations
# at run time to find the `StepInput` parameter.
import argparse
import math
import re
import sys
from typing import TYPE_CHECKING, Any

from distilabel.pipeline import Pipeline
from distilabel.steps import FormatTextGenerationSFT, StepInput
from distilabel.steps.tasks import Magpie, TextGeneration

from alignment.data import normalised, stable_hash
from pipelines import runner
from pipelines.llms import finish_column, load_tokenizer, sft_finish_fields

if TYPE_CHECKING:
    from distilabel.typing import StepOutput

NAME = "align-magpie"
ANSWER = "answer"  # the answering task

# role names a leaked turn starts with once special tokens are decoded away
_ROLES = r"(?:user|assistant|system|human|gpt|model|bot)"
_ROLE_AT_START = re.compile(rf"^\s*{_ROLES}\s*(?::|\n|$)", re.IGNORECASE)
_ROLE_LINE = re.compile(rf"\n[ \t]*{_ROLES}[ \t]*:?[ \t]*(?:\n|$)", re.IGNORECASE)
# the special tokens of the common chat-template families, written out as text
_MARKUP = re.compile(r"<\|[a-z_]+\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>",
                     re.IGNORECASE)


# ---------------------------------------------------------------- filters

def template_leak(text: str, special_tokens: tuple[str, ...] = ()) -> bool:
    """Whether a generated instruction carries chat-template markup: a special token
    (``special_tokens``, the tokenizer's, or one of the common families'), or a role name
    opening the text or standing on a line of its own (what is left of
    ``<|im_start|>assistant`` once the special tokens are decoded away)."""
    return bool(_MARKUP.search(text) or _ROLE_AT_START.match(text) or _ROLE_LINE.search(text)
                or any(t and t in text for t in special_tokens))


def filter_instructions(rows: list[dict], special_tokens: tuple[str, ...] = (),
                        near_threshold: float | None = 0.8,
                        keep_truncated: bool = False) -> tuple[list[dict], dict]:
    """The usable instructions of ``rows`` (each with ``instruction`` and
    ``instruction_finish_reason``), in order, and how many each filter dropped."""
    from pipelines.quality import near_duplicate_mask

    counts = dict.fromkeys(["empty", "template_leak", "truncated", "exact_duplicates",
                            "near_duplicates"], 0)
    kept = []
    for row in rows:
        text = (row.get("instruction") or "").strip()
        if not text:
            counts["empty"] += 1
        elif template_leak(text, special_tokens):
            counts["template_leak"] += 1
        elif row.get("instruction_finish_reason") == "length" and not keep_truncated:
            counts["truncated"] += 1
        else:
            kept.append({**row, "instruction": text})
    if kept:
        first = normalised([r["instruction"] for r in kept]).is_first_distinct().to_list()
        counts["exact_duplicates"] = first.count(False)
        kept = [r for r, f in zip(kept, first) if f]
    if kept and near_threshold is not None:
        dup = near_duplicate_mask([r["instruction"] for r in kept], near_threshold)
        counts["near_duplicates"] = int(dup.sum())
        kept = [r for r, d in zip(kept, dup) if not d]
    return kept, counts


def special_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special and added tokens longer than one character: written out
    in an instruction, each is a template leak."""
    if tokenizer is None:
        return ()
    added = [t.content if hasattr(t, "content") else str(t)
             for t in getattr(tokenizer, "added_tokens_decoder", {}).values()]
    return tuple(sorted({t for t in [*tokenizer.all_special_tokens, *added] if len(t) > 1}))


# ---------------------------------------------------------------- pipelines

class MagpieInstructions(Magpie):
    """distilabel's ``Magpie`` task (instructions only), reproducible per batch, keeping
    how each instruction ended.

    Every Magpie prompt of a batch is the same text, so a teacher seeded alike for every
    batch would write the same instructions each time: each batch seeds the LLM's next
    call from its rows' ``seed`` column (``TemplateMagpieMixin.seed_next_call``), so a
    resumed run draws the same instructions for the same rows. The task reads the
    finish reasons the LLM kept (``last_finish_reasons``); ``Magpie`` itself drops them.

    Input columns:
        - seed (`int`): the row's seed.
        - system_prompt (`str`, optional): a system turn before the user's.

    Output columns:
        - instruction (`str`): the generated instruction.
        - instruction_finish_reason (`str`): ``stop``, or ``length`` when the token limit
          cut it off (None where the backend did not say).
        - model_name (`str`): the teacher.

    Runtime parameters:
        - those of distilabel's ``Magpie``; build it with ``only_instruction=True``.

    Examples:
        ```python
        task = MagpieInstructions(llm=make_llm("smollm2", magpie=True),
                                  only_instruction=True)
        task.load()
        next(task.process([{"seed": 1}, {"seed": 2}]))  # two rows with an instruction each
        ```
    """

    @property
    def inputs(self) -> dict[str, bool]:
        return {"seed": True, "system_prompt": False}

    @property
    def outputs(self) -> list[str]:
        return [*super().outputs, "instruction_finish_reason"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        self.llm.seed_next_call(stable_hash(",".join(str(r["seed"]) for r in inputs)) % 2**31)
        rows = next(super().process(inputs))
        for row, reason in zip(rows, self.llm.last_finish_reasons):
            row["instruction_finish_reason"] = reason
        yield rows


def build_queries(rows: list[dict], llm, batch_size: int) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "seed"[, "system_prompt"]}`` -> ``instruction``."""
    with Pipeline(name=f"{NAME}-queries", cache_dir=runner.cache_root(),
                  description="Magpie: instructions from the user-turn prefix") as pipeline:
        journal = runner.Journal(columns=["id", "order", "instruction", "model_name",
                                          "instruction_finish_reason"],
                                 optional=["system_prompt"], input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> MagpieInstructions(llm=llm, only_instruction=True,
                               input_batch_size=batch_size) >> journal)
    return pipeline, journal


def build_answers(rows: list[dict], llm, batch_size: int) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "instruction"[, "system_prompt"]}`` -> SFT ``messages``."""
    with Pipeline(name=f"{NAME}-answers", cache_dir=runner.cache_root(),
                  description="Magpie: responses") as pipeline:
        journal = runner.Journal(columns=["id", "order", "messages", "model_name"],
                                 optional=[finish_column(ANSWER)], input_batch_size=batch_size)
        (runner.load_rows(rows, batch_size)
         >> TextGeneration(name=ANSWER, llm=llm, input_batch_size=batch_size)
         >> FormatTextGenerationSFT(input_batch_size=batch_size) >> journal)
    return pipeline, journal


def request_rows(num: int, seed: int, system_prompts: list[str], start: int = 0
                 ) -> list[dict]:
    """Requests ``start`` .. ``start + num - 1``, one row each; system prompts (if any)
    taken in turn."""
    rows = []
    for i in range(start, start + num):
        row = {"id": runner.text_id(f"magpie:{seed}:{i}"), "order": [i],
               "seed": stable_hash(f"{seed}:{i}") % 2**31}
        if system_prompts:
            row["system_prompt"] = system_prompts[i % len(system_prompts)]
        rows.append(row)
    return rows


def next_request_count(target: int, kept: int, asked: int) -> int:
    """How many requests the next round sends: the shortfall, scaled by the share of
    requests kept so far, at least the shortfall and at most four times it."""
    short = target - kept
    if asked == 0:
        return target
    rate = kept / asked
    return short * 4 if rate <= 0.25 else min(short * 4, max(short, math.ceil(short / rate)))


def ask(query_llm, *, target: int, max_rounds: int, seed: int, system_prompts: list[str],
        special: tuple[str, ...], near_threshold: float | None, keep_truncated: bool,
        batch_size: int, fresh: bool, ray: bool, log=print) -> tuple[list[dict], dict]:
    """Rounds of instruction requests until ``target`` pass the filters, a round adds
    none, or ``max_rounds`` have run: the kept instructions (at most ``target``) and the
    counts for the card. Request ``i`` has the same id and seed whatever round sends it,
    so the first round of a run is that of a single-round run, and a resumed run replays
    the finished rounds from the journal."""
    done: list[dict] = []
    kept: list[dict] = []
    counts: dict = {}
    rounds: list[dict] = []
    stopped = "max_rounds"
    for r in range(1, max_rounds + 1):
        n = next_request_count(target, len(kept), len(done))
        rows = request_rows(n, seed, system_prompts, start=len(done))
        done += runner.run(lambda part: build_queries(part, query_llm, batch_size), rows,
                           fresh=fresh, ray=ray)
        before = len(kept)
        kept, counts = filter_instructions(done, special, near_threshold, keep_truncated)
        added = min(len(kept), target) - before
        rounds.append({"round": r, "requests": n, "added": added,
                       "kept_so_far": min(len(kept), target)})
        log(f"magpie round {r}: asked for {n} instructions, {added} more passed the "
            f"filters ({min(len(kept), target)} of {target})")
        if len(kept) >= target:
            stopped = "target_reached"
            break
        if added <= 0:
            stopped = "no_new_instructions"
            break
    surplus = max(0, len(kept) - target)
    kept = kept[:target]
    why = {"target_reached": "target reached",
           "no_new_instructions": f"round {len(rounds)} added no instruction",
           "max_rounds": f"--max-rounds {max_rounds} reached"}[stopped]
    log(f"magpie: stopped after {len(rounds)} round(s), {why}: {len(kept)} of {target} "
        f"instructions")
    return kept, {"requests": len(done), "target": target, "kept_instructions": len(kept),
                  "instruction_filters": {**counts, "over_target": surplus},
                  "max_rounds": max_rounds, "stopped": stopped, "rounds": rounds}


def generate(query_llm, answer_llm, *, num_instructions: int = 8, max_rounds: int = 5,
             seed: int = 0, system_prompts: list[str] | None = None,
             special: tuple[str, ...] = (), near_threshold: float | None = 0.8,
             keep_truncated: bool = False, batch_size: int = 8, fresh: bool = False,
             ray: bool = False, log=print) -> tuple[list[dict], dict]:
    """SFT rows (prompt rows when ``answer_llm`` is None) for at most ``num_instructions``
    instructions that pass the filters, and the counts for the card."""
    kept, info = ask(query_llm, target=num_instructions, max_rounds=max_rounds, seed=seed,
                     system_prompts=system_prompts or [], special=special,
                     near_threshold=near_threshold, keep_truncated=keep_truncated,
                     batch_size=batch_size, fresh=fresh, ray=ray, log=log)
    if answer_llm is None:
        out = [{"id": runner.text_id(r["instruction"]), "prompt": r["instruction"],
                **({"system": r["system_prompt"]} if r.get("system_prompt") else {}),
                "model_name": r["model_name"]} for r in kept]
        return out, info
    answer_rows = [{"id": runner.text_id(r["instruction"]), "order": [i],
                    "instruction": r["instruction"],
                    **({"system_prompt": r["system_prompt"]} if r.get("system_prompt")
                       else {})}
                   for i, r in enumerate(kept)]
    out = runner.run(lambda part: build_answers(part, answer_llm, batch_size), answer_rows,
                     fresh=fresh, ray=ray)
    for row in out:
        row.update(sft_finish_fields([row.pop(finish_column(ANSWER), None)]))
    return out, info


# ---------------------------------------------------------------- command line

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate magpie", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-instructions", type=int, default=8,
                   help="instructions wanted after the filters; rounds of requests go on "
                        "until that many pass")
    p.add_argument("--max-rounds", type=int, default=5,
                   help="stop after this many rounds even if the target is not reached")
    p.add_argument("--system-prompt", action="append", default=None,
                   help="a system turn before the user's, to steer the topic; repeat for "
                        "several, used in turn (default: none)")
    p.add_argument("--query-max-tokens", type=int, default=128,
                   help="token limit of an instruction; one cut off is dropped")
    p.add_argument("--query-temperature", type=float, default=1.0,
                   help="sampling temperature of the instructions (Magpie samples at 1.0)")
    p.add_argument("--near-threshold", type=float, default=0.8,
                   help="drop an instruction with MinHash Jaccard >= this to an earlier one")
    p.add_argument("--keep-truncated", action="store_true",
                   help="keep instructions cut off by --query-max-tokens")
    p.add_argument("--no-answers", action="store_true",
                   help="write the instructions alone, as prompts (no answering stage)")
    p.add_argument("--template-from", default=None,
                   help="with --base-url: bundled name, folder or hub id whose chat template "
                        "the served model uses (default: --model)")
    runner.teacher_args(p)
    return p


def query_llm(args: argparse.Namespace):
    """The LLM asked for instructions: the teacher, Magpie-capable, at the query settings."""
    if args.dry_run:
        from pipelines.fake import FakeMagpieLLM

        return FakeMagpieLLM(generation_kwargs={"max_new_tokens": args.query_max_tokens})
    from pipelines.llms import make_llm

    return make_llm(args.model, base_url=args.base_url, api_key_env=args.api_key_env,
                    batch_size=args.concurrency, magpie=True,
                    template_from=args.template_from, max_new_tokens=args.query_max_tokens,
                    temperature=args.query_temperature,
                    do_sample=args.query_temperature > 0, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.num_instructions < 1 or args.max_rounds < 1:
        from alignment.errors import ConfigError

        raise ConfigError(f"--num-instructions {args.num_instructions}, --max-rounds "
                          f"{args.max_rounds}: each must be at least one")
    queries = query_llm(args)
    special = () if args.dry_run else special_tokens(
        queries.template_tokenizer() if args.base_url else load_tokenizer(args.model))
    print(f"pre-query prompt ({queries.model_name}): {queries.magpie_pre_query_template!r}")
    answers = None if args.no_answers else runner.teacher(args)
    rows, info = generate(queries, answers, num_instructions=args.num_instructions,
                          max_rounds=args.max_rounds, seed=args.seed, system_prompts=args.system_prompt, special=special,
                          near_threshold=args.near_threshold,
                          keep_truncated=args.keep_truncated, batch_size=args.concurrency,
                          fresh=args.fresh, ray=args.ray)
    dropped = ", ".join(f"{k} {v}" for k, v in info["instruction_filters"].items())
    print(f"asked for {info['requests']} instructions in {len(info['rounds'])} round(s), "
          f"kept {info['kept_instructions']} (dropped: {dropped})")
    for row in rows[:3]:
        text = row["prompt"] if args.no_answers else \
            next(m["content"] for m in row["messages"] if m["role"] == "user")
        print(f"  - {text[:100]!r}")
    runner.finish(rows, args, "Magpie data", {
        **runner.generation_info(args, [queries] + ([answers] if answers else [])),
        "technique": "magpie", "pre_query_template": queries.magpie_pre_query_template,
        "template_from": args.template_from or args.model,
        "queries": {"max_new_tokens": args.query_max_tokens,
                    "temperature": args.query_temperature},
        "system_prompts": args.system_prompt or [], "near_threshold": args.near_threshold,
        "keep_truncated": args.keep_truncated, "answers": not args.no_answers, **info})
    return 0


if __name__ == "__main__":
    sys.exit(main())
