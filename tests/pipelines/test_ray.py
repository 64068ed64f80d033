"""--ray for real: a local Ray cluster gives the rows of a plain run, and leaves nothing.

One Ray run covers both claims, because starting a cluster and its step actors costs
most of the test's time: the Ray run's journal is seeded with half of the plain run's
rows, as if an earlier attempt had died part-way, so Ray must generate exactly the
other half, and the output must still equal the plain run's row for row. The
reversal pipeline is the shortest (three steps, so the fewest actors to start).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from alignment.data import read_card, read_rows
from alignment.errors import ConfigError
from pipelines import reversal, runner
from pipelines.runner import JOURNAL_NAME, read_journal

# Ray is in the dev extra: these tests run wherever the suite does (no skip without it)

FACTS = [{"fact": "Paris is the capital of France"},
         {"fact": "Ada Lovelace was the first programmer", "person": True},
         {"fact": "Mount Everest is the highest mountain above sea level"},
         {"fact": "The Pacific Ocean is the largest ocean on Earth"}]


def journal_file(home: Path) -> Path:
    (path,) = glob.glob(str(home / "pipelines" / reversal.NAME / "journals" / "*" /
                            JOURNAL_NAME))
    return Path(path)


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (Ray's processes inherit it)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:  # gone, or not ours to read
            continue
    return [p for p in pids if p != os.getpid()]


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without Ray
    with pytest.raises(ConfigError, match=r"pip install 'align-rlhf\[ray\]'"):
        with runner.ray_cluster():
            pass


def test_a_bad_cpu_count_is_refused_before_ray_starts(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("ALIGN_RAY_CPUS", "two")
    with pytest.raises(ConfigError, match="ALIGN_RAY_CPUS=2"):
        with runner.ray_cluster():
            pass
    import ray

    assert not ray.is_initialized()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_run_resumes_and_equals_the_plain_run(tmp_path, monkeypatch):
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps(f) + "\n" for f in FACTS))
    args = ["--dry-run", "--facts", str(facts), "--concurrency", "1"]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local cluster, started by run
    monkeypatch.setenv("ALIGN_RAY_CPUS", "2")
    monkeypatch.setenv("ALIGN_HOME", str(tmp_path / "plain"))
    assert reversal.main([*args, "-o", str(tmp_path / "plain.jsonl")]) == 0
    plain = read_rows(tmp_path / "plain.jsonl")
    assert len(plain) == 4 * len(FACTS)

    # the journal of an attempt that finished facts 0 and 2 before it died
    journal = journal_file(tmp_path / "plain")
    seeded = tmp_path / "ray" / journal.relative_to(tmp_path / "plain")
    seeded.parent.mkdir(parents=True)
    seeded.write_text("".join(json.dumps(row) + "\n" for row in read_journal(journal)
                              if row["order"][0] % 2 == 0))

    marker = f"align-ray-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("ALIGN_RAY_TEST_MARK", marker)
    monkeypatch.setenv("ALIGN_HOME", str(tmp_path / "ray"))
    assert reversal.main([*args, "--ray", "-o", str(tmp_path / "ray.jsonl")]) == 0

    assert read_rows(tmp_path / "ray.jsonl") == plain
    assert read_card(tmp_path / "ray.jsonl")["ray"] is True
    # Ray generated the two pending facts, one batch each, and nothing else
    orders = [row["order"][0] for row in read_journal(seeded)]
    assert orders[:2] == [0, 2] and sorted(orders[2:]) == [1, 3]

    import ray

    assert not ray.is_initialized()
    # raylet and GCS stop with ray.shutdown; the workers notice within seconds
    deadline = time.monotonic() + 60
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(1)
    assert processes_with(marker) == [], "the local Ray cluster outlived the run"
