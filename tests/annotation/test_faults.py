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


def test_a_start_after_a_crash_rebuilds_the_search_index(tmp_path):
    """The index may miss what the database committed just before a kill; the next start
    rebuilds it (here it is lost altogether, the strongest case)."""
    from annotation import server as srv
    from annotation.client import ArgillaClient, resolve_connection
    from annotation.push import push

    sim = load_simulation()
    home = srv.ServerHome(tmp_path / "home")
    first = srv.start(home, port=srv.free_port())
    assert first["recovered"] is None  # a first start has nothing to recover
    try:
        with ArgillaClient(resolve_connection(home=home.root)) as c:
            ds = push(c, sim.ranked_rows(5), "crashy").dataset_id
        sim.crash(home)
        index = home.root / "search-index.sqlite3"
        for leftover in home.root.glob("search-index.sqlite3*"):
            leftover.unlink()
        info = srv.start(home, port=int(first["url"].rsplit(":", 1)[1]))
        assert "crashy: 5 records" in info["recovered"]
        assert index.exists()
        with ArgillaClient(resolve_connection(home=home.root)) as c:
            assert c.search_records(ds, {}, limit=10)["total"] == 5
        srv.stop(home)
        assert srv.start(home, port=srv.free_port())["recovered"] is None  # a clean stop
    finally:
        srv.stop(home)
