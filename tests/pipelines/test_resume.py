"""Resume for real: SIGKILL a pipeline mid-run, run it again, lose and repeat nothing."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from tests.helpers import ROOT

N_PROMPTS = 30

# The pipeline under test, run in its own process so it can be killed like a crashed
# job: 30 prompts in batches of 2, the fake teacher sleeping 0.3 s per batch.
SCRIPT = f"""
import json, sys
from pipelines import orca
from pipelines.fake import FakeLLM
# the guard: distilabel's step processes start from a forkserver, which imports the
# main module again (as any multiprocessing program without fork does)
if __name__ == "__main__":
    prompts = [f"Question {{i}}: what is {{i}} times three?" for i in range({N_PROMPTS})]
    rows = orca.generate(prompts, FakeLLM(delay=0.3), batch_size=2)
    json.dump(rows, open(sys.argv[1], "w"))
"""


def journal_lines(home: Path) -> int:
    files = glob.glob(str(home / "pipelines" / "align-orca" / "journals" / "*" / "*.jsonl"))
    return sum(1 for f in files for _ in open(f, encoding="utf-8"))


def test_sigkill_then_resume_gives_every_row_exactly_once(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "rows.json"
    env = dict(os.environ, ALIGN_HOME=str(home), HF_HUB_OFFLINE="1")
    # a session of its own: the kill reaches distilabel's step processes as well
    first = subprocess.Popen([sys.executable, str(script), str(out)], cwd=ROOT, env=env,
                             start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while journal_lines(home) < 6 and first.poll() is None:
            assert time.monotonic() < deadline, "the first run never wrote a row"
            time.sleep(0.05)
        done_before_kill = journal_lines(home)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL, "the run finished before it was killed"
    assert not out.exists()
    assert 6 <= done_before_kill < N_PROMPTS

    second = subprocess.run([sys.executable, str(script), str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    rows = json.loads(out.read_text())

    from pipelines.runner import text_id

    expected = [text_id(f"Question {i}: what is {i} times three?") for i in range(N_PROMPTS)]
    assert [r["id"] for r in rows] == expected  # each once, in input order
    assert [r["messages"][1]["content"] for r in rows] == [
        f"Question {i}: what is {i} times three?" for i in range(N_PROMPTS)]
    # the second run generated only what the first had not journalled (one more line
    # if the kill cut a line short)
    assert N_PROMPTS <= journal_lines(home) <= N_PROMPTS + 1


def test_a_line_cut_short_by_a_kill_is_skipped_and_not_glued(tmp_path):
    from pipelines.runner import Journal, read_journal

    path = tmp_path / "j.jsonl"
    path.write_text('{"id": "a", "order": [0]}\n{"id": "b", "ord')
    journal = Journal(columns=["id", "order"], path=str(path))
    journal.load()
    list(journal.process([{"id": "c", "order": [2]}]))
    assert [r["id"] for r in read_journal(path)] == ["a", "c"]


def test_pipelines_choose_the_start_method_only_when_they_run():
    # importing `pipelines` leaves multiprocessing alone; a run switches fork (fixed when
    # distilabel.pipeline is imported) to a forkserver, distilabel's pool class included
    code = """
import multiprocessing as mp
import pipelines, pipelines.quality, pipelines.rating_steps, pipelines.judge_backends
assert mp.get_start_method(allow_none=True) is None
from pipelines import orca, runner
runner.start_steps_from_forkserver()
from distilabel.pipeline import local
assert mp.get_start_method() == "forkserver", mp.get_start_method()
assert local._NoDaemonContext._name == "forkserver"
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
