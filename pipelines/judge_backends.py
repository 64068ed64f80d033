"""How a judge pipeline reaches its judge, and the options that choose it.

Two ways to get a verdict, one rule for failures:

- in-process (a model folder or bundled name): read the verdict off the next-token
  distribution (rating digits, response labels "A".."G"), like ``RatingJudge``. A small
  model rarely writes a parseable answer but still ranks the candidate tokens.
- an endpoint (``--base-url``, any OpenAI-compatible server): ask for a fixed output
  format (:mod:`pipelines.judge_prompts`) and parse it strictly (:mod:`pipelines.verdicts`).
  Text that does not match keeps its raw form, becomes ``None`` and is counted in the
  card; it is never coerced into a number.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distilabel.models.llms.base import LLM

log = logging.getLogger(__name__)


def next_token_probs(model: Any, tokenizer: Any, texts: Sequence[str],
                     token_ids: dict[str, list[int]], batch_size: int = 8
                     ) -> list[dict[str, float]]:
    """For each text, the probability of each key's tokens as the very next token
    (summed over a key's spellings, not renormalised)."""
    from alignment.judges import next_token_distributions

    encoded = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    return [{k: float(probs[ids].sum()) for k, ids in token_ids.items()}
            for probs in next_token_distributions(model, tokenizer, encoded, batch_size,
                                                  desc="judge")]


def fit_responses(tokenizer: Any, build, responses: Sequence[str], max_length: int,
                  mark: str = " [...]") -> tuple[list[str], bool]:
    """Shorten every response evenly until ``build(responses)`` fits ``max_length``
    tokens; returns the responses shown and whether any was cut."""
    def length(rs: Sequence[str]) -> int:
        return len(tokenizer(build(rs), add_special_tokens=False).input_ids)

    shown, cut = list(responses), False
    ids = [tokenizer(r, add_special_tokens=False).input_ids for r in responses]
    budget = max(len(i) for i in ids) if ids else 0
    while length(shown) > max_length and budget > 8:
        budget = int(budget * 0.8)
        shown = [r if len(i) <= budget else tokenizer.decode(i[:budget]) + mark
                 for r, i in zip(responses, ids)]
        cut = True
    return shown, cut


def ask(llm: LLM, prompts: Sequence[str], concurrency: int = 8,
        parsed: Callable[[int, str | None], bool] | None = None,
        parse_retries: int = 0) -> list[str | None]:
    """One reply per user prompt from ``llm``, ``concurrency`` requests in flight.

    Transient HTTP errors (429, 5xx, timeouts) are retried by the openai client itself
    (``max_retries`` with exponential backoff). ``parse_retries`` re-asks only the
    prompts whose reply ``parsed(index, text)`` rejects: useful with sampling, pointless at
    temperature 0 where the same prompt gets the same reply.
    """
    gen = dict(getattr(llm, "generation_kwargs", None) or {})
    replies: list[str | None] = [None] * len(prompts)
    todo = list(range(len(prompts)))
    for attempt in range(parse_retries + 1):
        for start in range(0, len(todo), concurrency):
            chunk = todo[start:start + concurrency]
            try:
                outs = llm.generate_outputs(
                    inputs=[[{"role": "user", "content": prompts[i]}] for i in chunk],
                    num_generations=1, **gen)
            except Exception as e:  # retries exhausted: these prompts get no verdict
                log.warning("judge requests failed after the client's retries (%s: %s); "
                            "%d prompts get no verdict", type(e).__name__, e, len(chunk))
                outs = [{"generations": [None]} for _ in chunk]
            for i, o in zip(chunk, outs):
                replies[i] = (o["generations"] or [None])[0]
        if parsed is None:
            break
        todo = [i for i in todo if not parsed(i, replies[i])]
        if not todo:
            break
    return replies


def endpoint_llm(args: argparse.Namespace) -> LLM:
    """The judge LLM for ``--base-url`` (or the fake judge for ``--dry-run``)."""
    if args.dry_run:
        from pipelines.fake import FAKE_JUDGE_NAME, FakeLLM

        return FakeLLM(name=FAKE_JUDGE_NAME, judge=True)
    from pipelines.llms import make_llm

    llm = make_llm(args.model, base_url=args.base_url, api_key_env=args.api_key_env,
                   max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   do_sample=args.temperature > 0, seed=args.seed)
    # make_llm leaves the openai client's retry policy at distilabel's defaults
    llm.max_retries, llm.timeout = args.max_retries, args.timeout
    return llm


def judge_args(ap: argparse.ArgumentParser, *, default_model: str = "smollm2") -> None:
    """Options every judge pipeline takes."""
    ap.add_argument("input", help="ranked dataset to judge (.jsonl, .parquet, a folder, or "
                                  "any ranked format align reads)")
    ap.add_argument("--output", "-o", required=True,
                    help="ranked dataset to write; the card goes beside it")
    g = ap.add_argument_group("judge")
    g.add_argument("--model", default=default_model,
                   help="judge: bundled name, model folder or hub id (in-process), or the "
                        "served model name with --base-url (default: %(default)s)")
    g.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint (vLLM, TGI, llama.cpp, transformers, "
                        "OpenAI, python -m pipelines.server): strict-parse its answers")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the endpoint's key (never printed; "
                        "a local server needs none)")
    g.add_argument("--concurrency", type=int, default=8,
                   help="requests in flight to the endpoint (default: %(default)s)")
    g.add_argument("--max-retries", type=int, default=6,
                   help="retries of rate-limited or failed requests, with exponential "
                        "backoff (default: %(default)s)")
    g.add_argument("--timeout", type=float, default=120.0,
                   help="seconds per request (default: %(default)s)")
    g.add_argument("--parse-retries", type=int, default=0,
                   help="re-ask prompts whose answer did not parse (useful only with "
                        "--temperature > 0; default: %(default)s)")
    g.add_argument("--temperature", type=float, default=0.0,
                   help="endpoint sampling temperature (default: %(default)s, greedy)")
    g.add_argument("--max-new-tokens", type=int, default=96,
                   help="cap on the endpoint's answer length (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=8,
                   help="prompts per forward pass of an in-process judge (default: "
                        "%(default)s)")
    g.add_argument("--dry-run", action="store_true",
                   help="use a deterministic fake judge that answers in the expected "
                        "formats: shows the output's shape without a model")
    ap.add_argument("--limit", type=int, default=None, help="judge only the first N rows")
    ap.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")


def backend(args: argparse.Namespace) -> str:
    return "endpoint" if (args.base_url or args.dry_run) else "in-process"


def judge_info(args: argparse.Namespace) -> dict:
    """The card's record of the judge; the key itself is never part of it."""
    from pipelines.fake import FAKE_JUDGE_NAME

    info = {"model": FAKE_JUDGE_NAME if args.dry_run else args.model,
            "backend": backend(args), "base_url": args.base_url}
    if backend(args) == "endpoint":
        info.update(api_key_env=args.api_key_env, concurrency=args.concurrency,
                    max_retries=args.max_retries, timeout=args.timeout,
                    parse_retries=args.parse_retries, temperature=args.temperature,
                    max_new_tokens=args.max_new_tokens)
    else:
        info["batch_size"] = args.batch_size
    return info
