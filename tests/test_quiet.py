"""A pipeline's happy path prints align's progress, not its libraries' logs and warnings.

distilabel logs screens of INFO per run, pydantic warns about distilabel's own models in
every process, distilabel print()s a failed citation lookup, and a log record after a run
used to hit distilabel's closed log queue. The run goes in a subprocess with the
environment a user has (no DISTILABEL_LOG_LEVEL, no PYTHONWARNINGS), through the CLI,
and logs one warning of its own after the pipeline, as later code in the process would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from tests.helpers import ROOT


DRIVER = """
import logging, sys
from alignment.cli import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    logging.getLogger("after.the.run").warning("a record after the run")
    sys.exit(code)
"""
NOISE = ("INFO", "Untracked error", "Logging error", "UserWarning", "Traceback",
         "Generating train split")


def run_pipeline(tmp_path: Path, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISTILABEL_LOG_LEVEL", "PYTHONWARNINGS")}
    env["ALIGN_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, "generate", "orca", "--dry-run", "--limit", "2",
         "-o", str(tmp_path / "orca.jsonl"), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_quiet_by_default_and_verbose_on_request(tmp_path):
    quiet = run_pipeline(tmp_path / "quiet")
    for noise in NOISE:
        assert noise not in quiet, quiet
    assert "wrote 2 rows to" in quiet  # align's own progress stays
    assert "a record after the run" in quiet  # and a later log record still gets out

    verbose = run_pipeline(tmp_path / "verbose", "--verbose")
    assert "INFO" in verbose and "distilabel.pipeline" in verbose
    assert "Logging error" not in verbose and "wrote 2 rows to" in verbose
