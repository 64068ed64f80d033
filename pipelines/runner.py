"""What every generation pipeline shares: teacher options, the journal that makes a
killed run resumable, and writing the dataset with its card.

Why a journal: distilabel 1.5.3 resumes a cached pipeline (``use_cache=True``) from
the batch manager it saves after every batch, but (1) the rows of the last step wait
in an in-memory write buffer (50 rows) before they reach Parquet, so a SIGKILL loses
rows the saved batch manager already counts as done, and (2) in our tests a run
resumed after a SIGKILL hung, waiting for a batch that died with the old processes.
So our pipelines end with ``Journal``, which appends each finished row to a JSON Lines
file and fsyncs before handing the batch back. ``run`` reads the journal first and
sends distilabel only the rows it does not hold yet; a row that was in flight when
the run died is simply generated again, and ``collect`` keeps one row per id.
tests/pipelines/test_resume.py kills a run with SIGKILL and checks that every input
row comes back exactly once.
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations
# at run time to find the `StepInput` parameter.
import argparse
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from distilabel.mixins.signature import _EXCLUDE_FROM_SIGNATURE_DEFAULTS
from distilabel.steps import LoadDataFromDicts, Step, StepInput
from pydantic import Field

import pipelines
from alignment.models import align_home
from pipelines import DATA_DIR  # noqa: F401  (pipelines/reversal.py reads it here)
from pipelines.llms import LENGTH

if TYPE_CHECKING:
    from distilabel.models.llms.base import LLM
    from distilabel.pipeline import Pipeline
    from distilabel.typing import StepOutput

JOURNAL_NAME = "align-journal.jsonl"


def text_id(text: str | list) -> str:
    """Stable row id: sha1 of the text, first 16 hex chars (docs/schemas.md)."""
    from alignment.data import prompt_id

    return prompt_id(text)


def cache_root() -> Path:
    """distilabel's cache for our pipelines: ``$ALIGN_HOME/pipelines``."""
    return align_home() / "pipelines"


# ---------------------------------------------------------------- command line

def teacher_args(parser: argparse.ArgumentParser, *, multi_model: bool = False) -> None:
    """Options every pipeline takes: teacher, generation settings, scale-out, output."""
    g = parser.add_argument_group("teacher")
    if multi_model:
        g.add_argument("--model", action="append", default=None,
                       help="teacher: bundled name (smollm2), model folder, hub id, or the "
                            "served name with --base-url; repeat for several models "
                            "(default: smollm2)")
    else:
        g.add_argument("--model", default="smollm2",
                       help="teacher: bundled name (smollm2), model folder, hub id, or the "
                            "served model name with --base-url (default: smollm2)")
    g.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint (vLLM, TGI, llama.cpp server, OpenAI)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the endpoint's API key (never printed)")
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--seed", type=int, default=0, help="sampling and selection seed")
    g.add_argument("--concurrency", type=int, default=16,
                   help="rows per batch sent to the teacher (and local generate batch size; "
                        "on a CPU 16 prompts a batch are about 3.5x faster than one at a time)")
    g.add_argument("--dry-run", action="store_true",
                   help="use the deterministic fake teacher: shows the pipeline's shape and "
                        "output format without loading a model")
    r = parser.add_argument_group("run")
    r.add_argument("--output", "-o", required=True,
                   help="where to write the dataset: .jsonl, .parquet or a folder "
                        "(save_to_disk); the card goes to README.md beside it")
    r.add_argument("--fresh", action="store_true",
                   help="ignore the cache of an earlier, interrupted run with the same "
                        "settings (default: resume it)")
    r.add_argument("--verbose", action=_Verbose,
                   help="show distilabel's INFO logs and the libraries' warnings (default: "
                        "only their warnings and errors, and align's own progress)")
    r.add_argument("--ray", action="store_true",
                   help="run on Ray via distilabel's pipeline.ray(): a local Ray started for "
                        "this run (ALIGN_RAY_CPUS caps its CPUs), or the running cluster "
                        "named by RAY_ADDRESS (needs `pip install 'align-rlhf[ray]'`)")
    q = parser.add_argument_group("quality filters (applied to the final rows)")
    q.add_argument("--dedup", action="store_true", help="drop exact duplicates (normalised)")
    q.add_argument("--near-dedup", type=float, default=None, metavar="JACCARD",
                   help="drop near-duplicates above this MinHash Jaccard estimate (e.g. 0.8)")
    q.add_argument("--min-chars", type=int, default=None, help="drop shorter responses")
    q.add_argument("--max-chars", type=int, default=None, help="drop longer responses")
    q.add_argument("--drop-refusals", action="store_true", help="drop refusing responses")
    q.add_argument("--decontaminate", default=None, metavar="EVAL_FILE",
                   help="drop rows sharing an n-gram with this evaluation set")
    q.add_argument("--ngram", type=int, default=13, help="n for --decontaminate")


class _Verbose(argparse.Action):
    """A flag that turns the libraries' output on as it is parsed: the pipelines hand
    their options to ``run`` piecemeal, and distilabel must see the level before it
    starts its step processes."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, True)
        pipelines.library_output(verbose=True)


def teacher(args: argparse.Namespace, model: str | None = None, delay: float = 0.0) -> "LLM":
    """The LLM from the parsed options (the fake one with --dry-run)."""
    if args.dry_run:
        from pipelines.fake import FakeLLM

        # its token limit too, so a dry run shows which replies would be cut off
        cap = {"generation_kwargs": {"max_new_tokens": args.max_new_tokens}}
        return FakeLLM(delay=delay, **cap) if model is None else \
            FakeLLM(name=f"fake:{model}", **cap)
    from pipelines.llms import make_llm

    return make_llm(model or args.model, base_url=args.base_url,
                    api_key_env=args.api_key_env, batch_size=args.concurrency,
                    max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    do_sample=args.temperature > 0, seed=args.seed)


def generation_info(args: argparse.Namespace, llms: list["LLM"]) -> dict:
    """The card's record of the teacher; the API key is never part of it."""
    return {"teacher": [llm.model_name for llm in llms],
            "endpoint": args.base_url, "dry_run": args.dry_run,
            "generation": {"max_new_tokens": args.max_new_tokens,
                           "temperature": args.temperature, "seed": args.seed,
                           "batch_size": args.concurrency},
            "ray": args.ray}


# ---------------------------------------------------------------- journal and run

class Journal(Step):
    """Append each row to a JSON Lines file and fsync before passing the batch on.

    Input columns:
        - the columns in ``columns`` (must include ``id``)
        - the columns in ``optional``, null where a row lacks them (such as the
          ``llm_<task>_finish_reason`` columns distilabel adds beside a task's declared
          outputs, absent when the task's call failed)

    Output columns:
        - none added; rows pass through unchanged

    Runtime parameters:
        - none; ``path`` is set by ``run`` from the pipeline's cache location

    Examples:
        ```python
        loader >> task >> Journal(columns=["id", "order", "messages"],
                                  optional=["llm_text_generation_0_finish_reason"])
        ```
    """

    columns: list[str]
    optional: list[str] = []
    path: str = ""
    # the journal's location follows the cache location, so it is no part of identity
    exclude_from_signature: set[str] = Field(
        default=_EXCLUDE_FROM_SIGNATURE_DEFAULTS | {"path"}, exclude=True)

    @property
    def inputs(self) -> dict[str, bool]:
        return {**dict.fromkeys(self.columns, True), **dict.fromkeys(self.optional, False)}

    @property
    def outputs(self) -> list[str]:
        return []

    def load(self) -> None:
        super().load()
        # a run killed mid-write leaves a line without its newline; end it, or the
        # first row of this run would be glued onto it and lost as unreadable
        if os.path.exists(self.path) and os.path.getsize(self.path):
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def process(self, inputs: StepInput) -> "StepOutput":
        with open(self.path, "a", encoding="utf-8") as f:
            for row in inputs:
                f.write(json.dumps({c: row.get(c) for c in self.columns + self.optional},
                                   ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        yield inputs


def load_rows(rows: list[dict], batch_size: int) -> LoadDataFromDicts:
    """The generator step feeding ``rows`` to a pipeline.

    distilabel leaves a ``LoadDataFromDicts``'s data out of the pipeline signature, so
    two runs over different inputs would share (and wrongly resume) one cache; the step
    name carries a fingerprint of the rows to keep them apart.
    """
    fingerprint = text_id(json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str))
    return LoadDataFromDicts(name=f"load_{fingerprint}", data=rows, batch_size=batch_size)


def journal_dir(pipeline: "Pipeline") -> Path:
    """Where the journal of a pipeline over *all* its rows lives.

    The pipeline signature covers the steps and the loader's fingerprint of the rows;
    the aggregated steps signature covers every step's settings (teacher, generation
    parameters, templates). Changing any of them starts a new journal.
    """
    key = hashlib.sha1((pipeline.signature + pipeline.aggregated_steps_signature)
                       .encode()).hexdigest()[:16]
    return cache_root() / pipeline.name / "journals" / key


def read_journal(path: Path) -> list[dict]:
    rows = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # a line cut short by a kill: its batch was never finished and its row
                # is pending again
                continue
    return rows


def collect(rows: list[dict]) -> list[dict]:
    """First row per ``id``, in input order (``order``), without the bookkeeping column."""
    seen: set[str] = set()
    out = []
    for row in sorted(rows, key=lambda r: r["order"]):
        if row["id"] in seen:
            continue
        seen.add(row["id"])
        out.append({k: v for k, v in row.items() if k != "order"})
    return out


# ---------------------------------------------------------------- Ray

@contextmanager
def ray_cluster() -> Iterator[None]:
    """Connect to the Ray cluster for one run, and leave none running after it.

    ``RAY_ADDRESS`` (set by hand, or by ``ray job submit`` for the job's driver) names a
    running cluster to join; without it a local one is started for this run: as many
    CPUs as ``ALIGN_RAY_CPUS`` says (default: every core Ray detects), no dashboard
    (it costs seconds of start-up on a small machine and dies with the run anyway).
    ``ray.shutdown`` stops a local cluster's processes and only disconnects from a
    shared one. A caller that already called ``ray.init`` keeps its cluster.
    """
    from alignment.errors import ConfigError

    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'align-rlhf[ray]' (then set "
                          "RAY_ADDRESS to use a running cluster)") from None
    if ray.is_initialized():
        yield
        return
    if address := os.environ.get("RAY_ADDRESS"):
        try:
            ray.init()
        except (ConnectionError, RuntimeError) as e:
            first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"could not join the Ray cluster at RAY_ADDRESS={address} ({first_line}). "
                "`ray status` on the head node prints the address to use; a cluster "
                "started with token authentication also needs RAY_AUTH_MODE=token here "
                "and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN") from e
    else:
        cpus = os.environ.get("ALIGN_RAY_CPUS", "")
        if cpus and not cpus.isdigit():
            raise ConfigError(f"ALIGN_RAY_CPUS={cpus!r}: give a whole number of CPUs for "
                              "the local Ray cluster, e.g. ALIGN_RAY_CPUS=2")
        ray.init(num_cpus=int(cpus) if cpus else None, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


def pin_to_driver_node(journal: Journal) -> None:
    """Schedule the journal step on the node that runs ``run``.

    ``run`` reads the journal from its own disk; on a multi-node cluster a journal
    written on another node would look empty, and every row would be lost from the
    output (and generated again on the next attempt). Each Ray node offers one unit of
    the resource ``node:<its IP>``. A Ray Client driver (``ray://``) is outside the
    cluster, so nothing can be pinned to it: its ``ALIGN_HOME`` must be shared storage.
    """
    import ray
    from ray.util.client import ray as ray_client

    if ray_client.is_connected():
        return
    journal.resources.resources = {f"node:{ray.util.get_node_ip_address()}": 1}


Build = Callable[[list[dict]], tuple["Pipeline", Journal]]


def run(build: Build, rows: list[dict], *, fresh: bool = False,
        ray: bool = False) -> list[dict]:
    """Run ``build(rows)``, or finish an interrupted run of it; one output row per input.

    Each input row needs a unique ``id`` and an ``order`` (its position). A rerun with
    the same rows and settings reads the journal, gives distilabel only the rows not yet
    journalled, and returns the union.
    """
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("input rows must have unique ids; deduplicate the prompts first")
    folder = journal_dir(build(rows)[0])
    path = folder / JOURNAL_NAME
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = {r["id"] for r in read_journal(path)}
    pending = [r for r in rows if r["id"] not in done]
    if pending:
        pipeline, journal = build(pending)
        journal.path = str(path)
        # distilabel's own cache resume (use_cache=True) hung after a SIGKILL in our
        # tests; the journal above already holds every finished row, so each attempt
        # runs distilabel fresh over the pending rows only.
        with distilabel_run():
            if ray:
                with ray_cluster():
                    pin_to_driver_node(journal)
                    pipeline.ray().run(use_cache=False)
            else:
                pipeline.run(use_cache=False)
    out = collect(read_journal(path))
    return [r for r in out if r["id"] in set(ids)]


def start_steps_from_forkserver() -> None:
    """Have distilabel start its step processes from a forkserver (before its run).

    distilabel starts one process per step with the default start method, fork on Linux.
    A parent that has already run torch (a test session, a notebook, a script that
    prepared a model) holds OpenMP, allocator and tokenizer locks that a forked child
    inherits mid-state: step processes then hang for good. A forkserver child starts from
    a clean interpreter instead. A start method the program chose itself is kept, but
    fork, which is what hangs. Importing ``distilabel.pipeline`` fixes the default start
    method and builds its pool's context class from it, so that class is rebuilt for the
    start method chosen here when it was made for another.
    """
    if multiprocessing.get_start_method(allow_none=True) in (None, "fork"):
        multiprocessing.set_start_method("forkserver", force=True)
    from distilabel.pipeline import local

    context = type(multiprocessing.get_context())
    if not issubclass(local._NoDaemonContext, context):
        local._NoDaemonContext = type("_NoDaemonContext", (context,),
                                      {"Process": local._NoDaemonProcess})


@contextmanager
def distilabel_run() -> Iterator[None]:
    """Wrap a distilabel ``pipeline.run``: step processes from a forkserver, this process's
    logging left as it was, and unless verbose (``pipelines.verbose``) none of the output
    distilabel prints on the happy path."""
    start_steps_from_forkserver()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with ExitStack() as stack:
            if not pipelines.verbose():
                stack.enter_context(_without_progress_bars())
                stack.enter_context(_stdout_without(_CITATION_LOOKUP))
            yield
    finally:
        # distilabel's setup_logging swaps the root logger's handlers for one QueueHandler
        # and sets its level; stop_logging closes the queue but leaves the handler, so any
        # later record in this process failed ("--- Logging error --- ... Queue is closed")
        root.handlers[:] = handlers
        root.setLevel(level)


# Building its Distiset at the end of a run, distilabel looks up a BibTeX citation for
# every link in its steps' docstrings. That lookup imports bs4 (not installed) before it
# checks the link is an arXiv one, and the failure is print()ed, so no log level hides
# it: "Untracked error: No module named 'bs4'". We never use the Distiset's citations
# (and with bs4 installed the lookup would query arxiv2bibtex.org at every run's end).
_CITATION_LOOKUP = ("Untracked error: ", "Couldn't obtain the bibtex format")


@contextmanager
def _stdout_without(prefixes: tuple[str, ...]) -> Iterator[None]:
    """``sys.stdout`` without the lines that start with ``prefixes``; the rest pass."""
    stream = sys.stdout
    sys.stdout = filtered = _LineFilter(stream, prefixes)
    try:
        yield
    finally:
        filtered.flush()
        if sys.stdout is filtered:
            sys.stdout = stream


class _LineFilter(io.TextIOBase):
    """A text stream that passes whole lines on to ``stream``, but those starting with
    ``prefixes``."""

    def __init__(self, stream, prefixes: tuple[str, ...]) -> None:
        self.stream, self.prefixes, self.pending = stream, prefixes, ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            if not line.startswith(self.prefixes):
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending and not self.pending.startswith(self.prefixes):
            self.stream.write(self.pending)
        self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:  # rich decides on colours and width from these
        return not self.closed and self.stream.isatty()

    @property
    def closed(self) -> bool:  # exit hooks (Ray's colorama) ask after the stream is gone
        return getattr(self.stream, "closed", False)

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8")


@contextmanager
def _without_progress_bars() -> Iterator[None]:
    """datasets' bar for the Distiset that distilabel builds from its own cache."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def write_dataset(rows: list[dict], output: str | Path, title: str,
                  info: dict) -> tuple[Path, Path]:
    """Write the rows and their card; return both paths."""
    from alignment.data import write_card, write_rows

    path = write_rows(rows, output)
    return path, write_card(path, title, {"rows": len(rows), **info})


# ---------------------------------------------------------------- outputs

def finish(rows: list[dict], args: argparse.Namespace, title: str, info: dict,
           text_of=None) -> Path:
    """Apply the quality filters chosen on the command line, write rows and card."""
    from pipelines import quality

    rows, failed = quality.drop_failed(rows)
    counts = {"failed_generations": failed}
    rows, filter_counts = quality.apply_filters(rows, args, text_of=text_of)
    counts.update(filter_counts)
    path, card = write_dataset(rows, args.output, title,
                               {**info, "filters": counts, **truncation_counts(rows)})
    print(f"wrote {len(rows)} rows to {path} (card: {card})")
    return path


def truncation_counts(rows: list[dict]) -> dict:
    """The card's record of how the rows' generated responses ended: how many the token
    limit cut off, and every finish reason's count (``unknown``: the backend did not say)."""
    reasons = Counter("unknown" if r is None else r
                      for row in rows for r in row.get("finish_reasons") or [])
    return {"truncated_responses": reasons.get(LENGTH, 0),
            "finish_reasons": dict(sorted(reasons.items()))}
