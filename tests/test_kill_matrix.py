"""One trial of the kill matrix (``tests/kill_matrix.py``) per target kind: a generation
pipeline, a judge pipeline, `align sft`, `align dpo`, `annotate push` and `annotate pull`,
each killed with SIGKILL at a random point and run again to the end. (`align loop` has its
own kill test; the other pipelines share orca's and pairwise's journal; the full matrix,
every pipeline with several trials, is `python -m tests.kill_matrix`.)"""

from __future__ import annotations

import pytest

from tests import kill_matrix as km

pytestmark = pytest.mark.slow

SUITE = ["orca", "pairwise", "sft", "dpo", "annotate-push", "annotate-pull"]


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    lines: list[str] = []
    # a fixed seed: the kill points are random, and the same on every machine
    results = km.run_matrix(tmp_path_factory.mktemp("kill-matrix"), SUITE, trials=1,
                            seed=11, report=lines.append)
    print("\n".join(lines))
    return {t.target: t for t in results}


@pytest.mark.parametrize("name", SUITE)
def test_a_killed_run_rerun_gives_every_row_once(trials, name):
    t = trials[name]
    assert t.rerun_exit == 0, km.describe(t)
    assert (t.lost, t.duplicated) == (0, 0), km.describe(t)
    assert t.equal, km.describe(t)  # same rows in the same order, or the same weights


def test_every_target_was_cut_mid_run(trials):
    # a kill after the run had finished would test nothing
    assert not [t.target for t in trials.values() if t.finished_before_kill]


def test_training_resumed_to_the_same_weights(trials):
    for name in ("sft", "dpo"):
        assert trials[name].weights_max_diff is not None
        assert trials[name].progress_at_kill >= 1  # a checkpoint existed: it resumed
