"""`align loop`: a killed loop resumes at the round and stage where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("loop") / "cons"
    assert align(["generate", "constraints", "-o", str(out), "--only", "lowercase", "quoted",
                  "ends_with", "--per-task", "1", "--heldout-fraction", "0.1"]) == 0
    return out


def loop_args(model: Path, prompts: Path, out: Path, rounds: int = 1) -> list[str]:
    return ["loop", "--prompts", str(prompts / "train.jsonl"), "--heldout",
            str(prompts / "heldout.jsonl"), "--model", str(model), "--output", str(out),
            "--rounds", str(rounds), "--prompts-per-round", "6", "--candidates", "2",
            "--max-new-tokens", "5", "--factual", "none", "--win-rate-judge", "none", "--keep-truncated",
            "--dpo", "--max_steps 3 --save_steps 1"]


def test_a_killed_loop_resumes_where_it_stopped(tiny_model, prompts, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "alignment.cli", *loop_args(tiny_model, prompts, out, 2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pairs = out / "round-1" / "pairs.jsonl"
    deadline = time.time() + 300
    while not pairs.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the loop and its `align dpo` child, mid-round
    proc.wait()
    assert pairs.exists() and not (out / "round-1" / "eval.json").exists()
    before = {p: p.stat().st_mtime_ns for p in (out / "round-1").glob("*.jsonl")}
    assert align(loop_args(tiny_model, prompts, out, 2)) == 0
    # stages already done were not redone; the rest of round 1 and round 2 were
    assert {p: p.stat().st_mtime_ns for p in before} == before
    for k in (1, 2):
        assert (out / f"round-{k}" / "dpo" / "metrics.json").exists()
        assert (out / f"round-{k}" / "eval.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert (out / "loop.png").exists()


def test_other_settings_in_the_same_folder_are_refused(tiny_model, prompts, tmp_path, capsys):
    out = tmp_path / "run"
    assert align(loop_args(tiny_model, prompts, out)) == 0
    changed = loop_args(tiny_model, prompts, out)
    changed[changed.index("--candidates") + 1] = "3"
    assert align(changed) == 2
    assert "candidates" in capsys.readouterr().err
    # more rounds on the same settings continue the same run
    assert align(loop_args(tiny_model, prompts, out, rounds=2)) == 0
    assert (out / "round-2" / "eval.json").exists()


def test_held_out_tasks_must_not_be_trained_on(tiny_model, prompts, tmp_path, capsys):
    args = loop_args(tiny_model, prompts, tmp_path / "x")
    args[args.index("--heldout") + 1] = str(prompts / "train.jsonl")
    assert align(args) == 2
    assert "both sides" in capsys.readouterr().err


def test_an_ai_judge_is_mixed_into_the_scores_and_judges_the_win_rate(tiny_model, prompts,
                                                                       tmp_path):
    """The path `make demo DEMO_ARGS="--judge qwen-judge"` takes, on the tiny model."""
    out = tmp_path / "run"
    args = loop_args(tiny_model, prompts, out)
    args[args.index("--win-rate-judge") + 1] = str(tiny_model)
    assert align([*args, "--judge", str(tiny_model), "--judge-weight", "0.5"]) == 0
    scored = [json.loads(line) for line in (out / "round-1" / "scored.jsonl").open()]
    assert scored and all(r["judge"] == f"verifiers+{tiny_model}" for r in scored)
    # a 0.5 weight moves the scores off the verifiers' own partial credit
    from alignment import verifiers

    mixed = [(s, verifiers.score(r["verifiers"], a)["score"])
             for r in scored for s, a in zip(r["scores"], r["responses"]) if s is not None]
    assert mixed and any(abs(s - v) > 1e-6 for s, v in mixed)
    assert all(0.0 <= s <= 1.0 for s, _ in mixed)
    figures = json.loads((out / "round-1" / "eval.json").read_text())
    assert figures["win_rate"] is not None
