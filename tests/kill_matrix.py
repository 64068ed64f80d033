"""The kill matrix: every long-running command killed with SIGKILL at a random point, run
again, and its result compared with an uninterrupted run's.

    python -m tests.kill_matrix [--trials 3] [--only orca dpo ...] [--seed 0]

For each target: one uninterrupted reference run, then ``--trials`` trials in fresh
folders. A trial starts the command in a session of its own, kills the whole session
(the command, distilabel's step processes, `align loop`'s children) at a random moment,
runs the command again to the end, and compares. Even trials kill once the command has
made random progress (rows journalled, checkpoints written, records stored), odd
trials at a random time of the reference run's length, which also hits start-up and the
final write. The pipelines run on the deterministic fake teacher and judge (``--dry-run``)
slowed to a fixed time per batch, so a run lasts long enough to be cut.

What is compared: the rows of the output (each id once, equal to the reference's, in the
same order), training's logged steps (each once) and its final adapter weights (within 1e-5: they are
float32 under bf16 autocast too, so resuming is exact on both kinds of CPU), the records
on the Argilla server. ``tests/test_kill_matrix.py`` runs one trial each of six targets
(a generation and a judge pipeline, sft, dpo, push, pull); this script prints the table
the README reports.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DELAY = 0.15  # seconds the fake teacher or judge spends per batch

# The command under test. distilabel starts its step processes from a forkserver, which
# imports this file again as the main module: the slowed fake is installed at import
# time, so every step process gets it; the command itself runs under the guard.
DRIVER = f"""
import functools, sys, time
from pipelines import fake
_generate = fake.FakeLLM.generate
@functools.wraps(_generate)  # distilabel reads generate's signature
def slowed(self, *args, **kwargs):
    time.sleep({DELAY})
    return _generate(self, *args, **kwargs)
fake.FakeLLM.generate = slowed
if __name__ == "__main__":
    from alignment.cli import main
    sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Result:
    """What a finished run left: its rows (by id, in order) and, for training, weights."""

    ids: list[str]
    rows: list[Any]
    weights: dict[str, Any] | None = None


@dataclass
class Target:
    name: str
    argv: Callable[[Path], list[str]]  # align's arguments, for a run folder
    progress: Callable[[Path], int]  # how far a run has come (journal lines, checkpoints)
    result: Callable[[Path], Result]
    rerun: Callable[[Path], list[str]] | None = None  # arguments of the second run
    setup: Callable[[Path], None] | None = None  # prepares a run folder (server data)


@dataclass
class Trial:
    target: str
    mode: str  # "progress" or "time"
    killed_at_s: float
    progress_at_kill: int
    finished_before_kill: bool
    lost: int
    duplicated: int
    equal: bool
    weights_max_diff: float | None = None
    rerun_exit: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the killed run and the rerun together

    @property
    def ok(self) -> bool:
        return self.rerun_exit == 0 and not self.lost and not self.duplicated and self.equal


# ---------------------------------------------------------------- inputs and readers

def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def journal_lines(run: Path) -> int:
    total = 0
    for f in (run / "home" / "pipelines").glob("*/journals/*/*.jsonl"):
        with open(f, "rb") as fh:
            total += sum(1 for _ in fh)
    return total


def rows_result(out: str = "out.jsonl", key: str = "id") -> Callable[[Path], Result]:
    def read(run: Path) -> Result:
        rows = read_jsonl(run / out)
        return Result([str(r.get(key)) for r in rows], rows)
    return read


PROMPTS = [f"Question {i}: what is {i} times three, and why?" for i in range(24)]


def ranked_rows(n: int = 24) -> list[dict]:
    return [{"id": f"r{i:03d}", "prompt": PROMPTS[i % len(PROMPTS)],
             "responses": [f"It is {3 * i}.", f"Maybe {i}.", "I cannot say."],
             "models": ["a", "b", "c"], "scores": [None] * 3, "judge": "none",
             "judge_raw": [""] * 3} for i in range(n)]


def pipeline(name: str, *args: str, inputs: str = "prompts") -> Target:
    """A generation or judge pipeline on the slowed fake, two rows per batch."""
    def argv(run: Path) -> list[str]:
        return ["generate", name, *[a.format(run=run) for a in args], "--dry-run",
                "-o", str(run / "out.jsonl")]
    batch = ["--concurrency", "2"] if inputs == "prompts" else ["--batch-size", "2"]
    return Target(name, lambda run: argv(run) + batch, journal_lines, rows_result())


# ---------------------------------------------------------------- training targets

def training(method: str, data: str) -> Target:
    """``align sft`` or ``align dpo`` on the tiny model, a checkpoint every step; the
    second run resumes from the newest complete checkpoint, or starts over without one."""
    steps = 8

    def argv(run: Path) -> list[str]:
        return [method, "--model", str(run.parent / "tiny-model"), "--dataset",
                str(run.parent / data), "--output_dir", str(run / "out"), "--max_steps",
                str(steps), "--save_strategy", "steps", "--save_steps", "1",
                "--save_total_limit", "3", "--logging_steps", "1", "--eval_split", "0",
                "--per_device_train_batch_size", "2", "--learning_rate", "5e-3",
                "--seed", "7"]

    def rerun(run: Path) -> list[str]:
        has = any((run / "out").glob("checkpoint-*"))
        return argv(run) + (["--resume_from_checkpoint", "latest"] if has else [])

    def progress(run: Path) -> int:
        return sum(1 for _ in (run / "out").glob("checkpoint-*/trainer_state.json"))

    def result(run: Path) -> Result:
        from safetensors.torch import load_file

        out = run / "out"
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        steps_logged = [e for e in history if "loss" in e]
        return Result([str(e["step"]) for e in steps_logged],
                      [round(e["loss"], 3) for e in steps_logged],
                      load_file(out / "adapter_model.safetensors"))

    return Target(method, argv, progress, result, rerun=rerun)


def loop_target() -> Target:
    """Two rounds of ``align loop`` on the tiny model (generate, score, DPO, evaluate)."""
    def argv(run: Path) -> list[str]:
        cons = run.parent / "constraints"
        return ["loop", "--prompts", str(cons / "train.jsonl"), "--heldout",
                str(cons / "heldout.jsonl"), "--model", str(run.parent / "tiny-model"),
                "--output", str(run / "out"), "--rounds", "2", "--prompts-per-round", "6",
                "--candidates", "2", "--max-new-tokens", "5", "--factual", "none",
                "--win-rate-judge", "none", "--keep-truncated",
                "--dpo", "--max_steps 3 --save_steps 1"]

    def progress(run: Path) -> int:
        return sum(1 for _ in (run / "out").glob("round-*/*")) if (run / "out").exists() else 0

    def result(run: Path) -> Result:
        summary = json.loads((run / "out" / "summary.json").read_text())
        pairs = [read_jsonl(p) for p in sorted((run / "out").glob("round-*/pairs.jsonl"))]
        return Result([str(r["round"]) for r in summary["rounds"]],
                      [[(p.get("prompt"), p.get("chosen"), p.get("rejected")) for p in ps]
                       for ps in pairs])

    return Target("loop", argv, progress, result)


# ---------------------------------------------------------------- annotation targets

class Server:
    """One local Argilla server for the annotation targets, started on first use."""

    home: Path | None = None

    @classmethod
    def ensure(cls, folder: Path) -> Path:
        if cls.home is None:
            from annotation import server as srv

            cls.home = folder / "argilla"
            srv.start(srv.ServerHome(cls.home), port=srv.free_port())
        return cls.home

    @classmethod
    def stop(cls) -> None:
        if cls.home is not None:
            from annotation import server as srv

            srv.stop(srv.ServerHome(cls.home))
            cls.home = None


def _client():
    from annotation.client import ArgillaClient, resolve_connection

    return ArgillaClient(resolve_connection(home=Server.home))


PUSH_ROWS = 600


def push_target() -> Target:
    """``align annotate push`` of 600 records in batches of 20; run again, it must store
    each record once."""
    def name(run: Path) -> str:
        return f"km-{run.name}-{os.getpid()}"

    def argv(run: Path) -> list[str]:
        return ["annotate", "push", str(run.parent / "push-rows.jsonl"), "--dataset-name",
                name(run), "--home", str(Server.home), "--batch-size", "20"]

    def progress(run: Path) -> int:
        from annotation.client import ArgillaError

        try:
            with _client() as c:
                ds = c.dataset(name(run))
                return 0 if ds is None else c.get(f"/api/v1/datasets/{ds['id']}/progress")["total"]
        except ArgillaError:
            return 0

    def result(run: Path) -> Result:
        with _client() as c:
            ds = c.dataset(name(run))
            records = list(c.records(ds["id"]))
        ids = sorted(r["external_id"] for r in records)
        return Result(ids, ids)

    return Target("annotate-push", argv, progress, result)


def pull_target() -> Target:
    """``align annotate pull`` of an annotated dataset to pairs; the output is written
    once at the end, so a killed pull leaves nothing or the whole file."""
    def argv(run: Path) -> list[str]:
        return ["annotate", "pull", "--dataset-name", "km-annotated", "--home",
                str(Server.home), "--output", str(run / "out.jsonl"), "--pairs", "all"]

    def progress(run: Path) -> int:
        return int((run / "out.jsonl").exists())

    def read(run: Path) -> Result:
        rows = read_jsonl(run / "out.jsonl")
        return Result([json.dumps([r.get("prompt"), r.get("chosen"), r.get("rejected")])
                       for r in rows], rows)

    return Target("annotate-pull", argv, progress, read)


# ---------------------------------------------------------------- the matrix

def targets() -> dict[str, Target]:
    ts = [
        pipeline("orca", "--prompts", "{run}/../prompts.jsonl"),
        pipeline("self-instruct", "--num-instructions", "16", "--num-prompts", "8"),
        pipeline("evol-instruct", "--prompts", "{run}/../prompts.jsonl", "--limit", "12",
                 "--rounds", "2"),
        pipeline("magpie", "--num-instructions", "16"),
        pipeline("multi-turn", "--topics", "{run}/../prompts.jsonl", "--limit", "10",
                 "--turns", "2"),
        pipeline("responses", "--prompts", "{run}/../prompts.jsonl", "--n", "2"),
        pipeline("reversal"),
        pipeline("ultrafeedback", "{run}/../ranked.jsonl", inputs="ranked"),
        pipeline("helpsteer", "{run}/../ranked.jsonl", inputs="ranked"),
        pipeline("ranking", "{run}/../ranked.jsonl", inputs="ranked"),
        pipeline("pairwise", "{run}/../ranked.jsonl", inputs="ranked"),
        training("sft", "chats.jsonl"),
        training("dpo", "pairs.jsonl"),
        loop_target(),
        push_target(),
        pull_target(),
    ]
    return {t.name: t for t in ts}


NEEDS_SERVER = ("annotate-push", "annotate-pull")


def prepare(folder: Path, names: list[str]) -> None:
    """Inputs every target reads, in ``folder`` (each run gets a sub-folder)."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers import build_tiny_model, write_chats, write_pairs

    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    write_jsonl(folder / "ranked.jsonl", ranked_rows())
    if {"sft", "dpo", "loop"} & set(names):
        build_tiny_model(folder / "tiny-model")
        write_chats(folder / "chats.jsonl", n=16)
        write_pairs(folder / "pairs.jsonl", n=16)
    if "loop" in names:
        done = subprocess.run(
            [sys.executable, "-m", "alignment.cli", "generate", "constraints", "-o",
             str(folder / "constraints"), "--only", "lowercase", "quoted", "ends_with",
             "--per-task", "1", "--heldout-fraction", "0.1"],
            cwd=ROOT, env=_env(folder / "prep"), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    if set(NEEDS_SERVER) & set(names):
        Server.ensure(folder)
        rows = [{**r, "id": f"p{i:04d}", "prompt": f"{r['prompt']} ({i})"}
                for i, r in enumerate(ranked_rows(PUSH_ROWS))]
        write_jsonl(folder / "push-rows.jsonl", rows)
    if "annotate-pull" in names:
        _annotated_dataset()


def _annotated_dataset() -> None:
    """A dataset with two annotators' rankings, for the pull target."""
    from annotation.client import ArgillaClient
    from annotation.push import push
    from annotation.users import UserSpec

    users = [UserSpec(f"km-{i}", "annotator", f"km-{i}-password") for i in range(2)]
    with _client() as c:
        result = push(c, ranked_rows(), "km-annotated", users=users, min_submitted=2)
        url = c.connection.url
    for k, u in enumerate(users):
        with ArgillaClient.for_user(url, u.username, u.password) as me:
            with _client() as owner:
                records = list(owner.records(result.dataset_id))
            for i, r in enumerate(records):
                order = [1, 2, 3] if (i + k) % 2 else [2, 1, 3]
                me.respond(r["id"], {
                    "ranking": {"value": [{"value": f"response_{j + 1}", "rank": order[j]}
                                          for j in range(3)]},
                    "best_quality": {"value": 4}})


def _env(run: Path) -> dict:
    return {**os.environ, "ALIGN_HOME": str(run / "home"), "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}


def _start(run: Path, args: list[str]) -> subprocess.Popen:
    run.mkdir(parents=True, exist_ok=True)
    driver = run.parent / "driver.py"
    if not driver.exists():
        driver.write_text(DRIVER)
    log = open(run / "log.txt", "ab")
    return subprocess.Popen([sys.executable, str(driver), *args], cwd=ROOT, env=_env(run),
                            start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def _finish(run: Path, args: list[str], timeout: float = 600) -> int:
    proc = _start(run, args)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def reference(target: Target, folder: Path) -> tuple[Result, float, int]:
    """The uninterrupted run: its result, its length in seconds, its final progress."""
    run = folder / f"{target.name}-reference"
    began = time.monotonic()
    code = _finish(run, target.argv(run))
    took = time.monotonic() - began
    if code != 0:
        raise RuntimeError(f"{target.name}: the uninterrupted run failed (exit {code}); "
                           f"log: {run / 'log.txt'}\n{_tail(run)}")
    return target.result(run), took, target.progress(run)


def _tail(run: Path) -> str:
    try:
        return "\n".join((run / "log.txt").read_text(errors="replace").splitlines()[-30:])
    except FileNotFoundError:
        return ""


def trial(target: Target, folder: Path, k: int, ref: Result, ref_s: float, most: int,
          rng: random.Random) -> Trial:
    run = folder / f"{target.name}-trial-{k}"
    # a run whose progress is all or nothing (a pull writes its file once) is cut by time
    mode = "progress" if k % 2 == 0 and most > 1 else "time"
    began_trial = time.monotonic()
    proc = _start(run, target.argv(run))
    began = time.monotonic()
    try:
        if mode == "progress":
            want = rng.randint(1, max(1, most - 1))  # (a run that ends at `most`)
            while target.progress(run) < want and proc.poll() is None \
                    and time.monotonic() - began < 600:
                time.sleep(0.02)
            time.sleep(rng.uniform(0, DELAY))  # mid-batch, mid-write, or between
        else:
            end = began + rng.uniform(0.05, 0.95) * ref_s
            while time.monotonic() < end and proc.poll() is None:
                time.sleep(0.02)
        finished = proc.poll() is not None
        at = time.monotonic() - began
        at_progress = target.progress(run)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    args = (target.rerun or target.argv)(run)
    code = _finish(run, args)
    if code != 0:
        return Trial(target.name, mode, at, at_progress, finished, len(ref.ids), 0, False,
                     rerun_exit=code, notes=[_tail(run)])
    got = target.result(run)
    lost = len(set(ref.ids) - set(got.ids))
    duplicated = len(got.ids) - len(set(got.ids))
    equal = got.ids == ref.ids and got.rows == ref.rows
    diff = None
    if ref.weights is not None:
        diff = max(float((ref.weights[n].float() - got.weights[n].float()).abs().max())
                   for n in ref.weights)
        # the trained LoRA weights are float32 under bf16 autocast too, and a checkpoint
        # restores them with the optimizer and random state: resuming is exact on both
        # kinds of CPU (as in tests/alignment/recipes/test_resume.py)
        equal = got.ids == ref.ids and diff <= 1e-5
    return Trial(target.name, mode, at, at_progress, finished, lost, duplicated, equal, diff,
                 seconds=time.monotonic() - began_trial)


def run_matrix(folder: Path, names: list[str], trials: int, seed: int = 0,
               report: Callable[[str], None] = print) -> list[Trial]:
    chosen = targets()
    unknown = set(names) - set(chosen)
    if unknown:
        raise SystemExit(f"unknown targets: {sorted(unknown)}; known: {sorted(chosen)}")
    rng = random.Random(seed)
    prepare(folder, names)
    results = []
    try:
        for name in names:
            target = chosen[name]
            ref, ref_s, most = reference(target, folder)
            for k in range(trials):
                t = trial(target, folder, k, ref, ref_s, most, rng)
                results.append(t)
                report(describe(t))
    finally:
        Server.stop()
    return results


def describe(t: Trial) -> str:
    w = f", weights max diff {t.weights_max_diff:.2g}" if t.weights_max_diff is not None else ""
    when = "finished before the kill" if t.finished_before_kill else \
        f"killed at {t.killed_at_s:.1f} s (progress {t.progress_at_kill})"
    return (f"{t.target:14s} {t.mode:8s} {when}: rerun exit {t.rerun_exit}, lost {t.lost}, "
            f"duplicated {t.duplicated}, equal to the uninterrupted run: {t.equal}{w}"
            + f" [{t.seconds:.0f} s]" + ("".join("\n    " + n for n in t.notes)))


def table(results: list[Trial]) -> str:
    by: dict[str, list[Trial]] = {}
    for t in results:
        by.setdefault(t.target, []).append(t)
    lines = ["| target | trials | killed mid-run | rows lost | rows duplicated | equal to "
             "uninterrupted |", "|---|---|---|---|---|---|"]
    for name, ts in by.items():
        lines.append(f"| {name} | {len(ts)} | {sum(not t.finished_before_kill for t in ts)} | "
                     f"{sum(t.lost for t in ts)} | {sum(t.duplicated for t in ts)} | "
                     f"{sum(t.equal for t in ts)}/{len(ts)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    p = argparse.ArgumentParser(prog="python -m tests.kill_matrix")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--only", nargs="+", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", help="run in this folder and keep it (default: a temp folder)")
    args = p.parse_args(argv)
    names = args.only or list(targets())
    if args.keep:
        results = run_matrix(Path(args.keep), names, args.trials, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="align-kill-matrix-") as tmp:
            results = run_matrix(Path(tmp), names, args.trials, args.seed)
    print(table(results))
    return 0 if all(t.ok for t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
