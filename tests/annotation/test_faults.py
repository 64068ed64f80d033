"""Argilla under load and faults: annotators submitting at once while every server
process is killed with SIGKILL and restarted; no acknowledged response may be lost."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def load_simulation():
    spec = importlib.util.spec_from_file_location("bench_annotators",
                                                  ROOT / "bench" / "annotators.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_crash_mid_annotation_loses_no_acknowledged_response(tmp_path):
    sim = load_simulation()
    report = sim.simulate(tmp_path / "home", annotators=3, records=16, kill_after=20,
                          time_limit=240)
    print("\n".join(report.lines()))
    assert report.outage_s is not None  # the server was killed and came back
    assert report.acknowledged >= 20
    assert report.lost == 0 and report.duplicated == 0
    # every annotator finished the dataset after the restart, and the search index
    # offers nobody a record the database says they answered
    assert report.index_consistent and report.stale == 0
    assert len(report.next_s) >= report.acknowledged and report.submit_s
