"""`align annotate calibrate`: judges against the human consensus, on pulled records
built here (no server)."""

from __future__ import annotations

import json
import random

import pytest

from alignment.cli import main as align
from annotation import calibration

OPTS = ["response_1", "response_2", "response_3", "response_4"]


def _ranking(order: list[int]) -> dict[str, int]:
    """``order``: option indices best first -> {option: rank}."""
    return {OPTS[i]: rank for rank, i in enumerate(order, 1)}


def _records(n: int = 30, seed: int = 0) -> tuple[list[dict], list[list[float]]]:
    """Pulled records whose three annotators agree on a hidden quality per response (one
    of them swaps two neighbours); returns the rows and each record's true qualities."""
    rng = random.Random(seed)
    rows, truths = [], []
    for k in range(n):
        quality = rng.sample(range(10), len(OPTS))
        order = sorted(range(len(OPTS)), key=lambda i: -quality[i])
        noisy = list(order)
        j = rng.randrange(len(OPTS) - 1)
        noisy[j], noisy[j + 1] = noisy[j + 1], noisy[j]
        rows.append({"id": f"r{k}", "options": OPTS,
                     "responses": [f"answer {k}.{i}" for i in range(len(OPTS))],
                     "rankings": {"alice": _ranking(order), "bob": _ranking(order),
                                  "carol": _ranking(noisy)}})
        truths.append([float(q) for q in quality])
    return rows, truths


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _by_judge(result: dict) -> dict:
    return {f["judge"]: f for f in result["judges"]}


def test_matching_reversed_and_random_judges(tmp_path, capsys):
    rows, truths = _records(40)
    rng = random.Random(1)
    for row, truth in zip(rows, truths):
        row["judge_scores_matching"] = truth
        row["judge_scores_reversed"] = [-q for q in truth]
        row["judge_scores_noisy"] = [q + rng.gauss(0, 3) for q in truth]
        row["judge_scores_random"] = [rng.random() for _ in truth]
    src = _write(tmp_path / "records.jsonl", rows)
    assert align(["annotate", "calibrate", "--input", src]) == 0
    out = capsys.readouterr().out
    assert "best agreement with the annotators: matching" in out
    assert "noisy     40       0.558 [0.425, 0.675]" in out  # the README quotes this table

    result = json.loads((tmp_path / "calibration.json").read_text())
    judges = _by_judge(result)
    # the consensus (Borda over three annotators, two of them exact) orders as the truth
    assert judges["matching"]["kendall_tau"]["mean"] == pytest.approx(1.0)
    assert judges["matching"]["kendall_tau"]["ci95"] == [pytest.approx(1.0)] * 2
    assert judges["matching"]["top1_agreement"]["mean"] == pytest.approx(1.0)
    assert judges["reversed"]["kendall_tau"]["mean"] == pytest.approx(-1.0)
    assert judges["reversed"]["top1_agreement"]["mean"] == pytest.approx(0.0)
    rand = judges["random"]["kendall_tau"]
    assert abs(rand["mean"]) < 0.25 and rand["ci95"][0] < 0 < rand["ci95"][1]
    noisy = judges["noisy"]["kendall_tau"]
    assert 0.3 < noisy["mean"] < 0.8 and noisy["ci95"][0] > rand["ci95"][1]
    assert [f["judge"] for f in result["judges"]] == ["matching", "noisy", "random", "reversed"]
    assert result["best_judge"] == "matching"
    assert len(judges["matching"]["per_record"]) == 40

    # reliability: the matching judge's picks are what most annotators preferred
    curve = judges["matching"]["reliability"]
    assert sum(b["pairs"] for b in curve) == 40 * 6
    assert all(b["human_agree_rate"] > 0.6 for b in curve)
    assert all(b["human_agree_rate"] < 0.4 for b in judges["reversed"]["reliability"])
    # a noisy judge's wide margins are right more often than its narrow ones
    noisy_curve = judges["noisy"]["reliability"]
    assert noisy_curve[-1]["human_agree_rate"] > noisy_curve[0]["human_agree_rate"]
    png = tmp_path / "calibration.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary behind


def test_pulled_judge_columns_and_ranked_files(tmp_path):
    """The suggesting judge from pull's columns (ranks when the scores are missing), and a
    judge from a ranked file matched by id with its responses in another order."""
    rows, truths = _records(12)
    ranked = []
    for row, truth in zip(rows, truths):
        order = sorted(range(len(OPTS)), key=lambda i: -truth[i])
        row["judge_ranks"] = _ranking(order[::-1])  # the suggestion was backwards
        row["judge_scores"] = [None] * len(OPTS)
        perm = [3, 1, 0, 2]
        ranked.append({"id": row["id"], "prompt": "p", "judge": "rm (tiny)",
                       "responses": [row["responses"][i] for i in perm],
                       "scores": [truth[i] for i in perm]})
    ranked.append({"id": "elsewhere", "prompt": "q", "responses": ["x", "y"], "scores": [1, 2]})
    src = _write(tmp_path / "records.jsonl", rows)
    extra = _write(tmp_path / "rm.jsonl", ranked)
    result, json_path, png = calibration.run(src, [extra], tmp_path / "out" / "cal.json",
                                             resamples=200)
    judges = _by_judge(result)
    assert judges["judge"]["kendall_tau"]["mean"] == pytest.approx(-1.0)
    assert judges["rm (tiny)"]["kendall_tau"]["mean"] == pytest.approx(1.0)
    assert judges["rm (tiny)"]["records_compared"] == 12
    assert result["best_judge"] == "rm (tiny)"
    assert png == tmp_path / "out" / "cal.png" and png.stat().st_size > 0
    assert json.loads(json_path.read_text())["judges"][0]["judge"] == "rm (tiny)"


def test_pull_report_rows_feed_calibrate(tmp_path):
    """records_table (the report's records.jsonl) carries what calibrate reads back."""
    from annotation import pull

    record = pull.PulledRecord(
        id="r", prompt="p", responses=["a", "b", "c"], options=OPTS[:3],
        rankings={"alice": _ranking([0, 1, 2]), "bob": _ranking([1, 0, 2])}, ratings={},
        comments={}, judge_ranks={OPTS[0]: 3, OPTS[1]: 2, OPTS[2]: 1},
        judge_scores=[7.0, 5.0, 1.0], judge="uf-tiny")
    pull.aggregate([record])
    src = _write(tmp_path / "records.jsonl", pull.records_table([record]))
    result, _, _ = calibration.run(src, resamples=50)
    judge = result["judges"][0]
    assert judge["judge"] == "uf-tiny"  # the suggestion's agent names the judge
    # the scores win over the ranks; Borda points 3, 3, 0 tie the first two
    assert judge["kendall_tau"]["mean"] == pytest.approx(
        pull.agreement.kendall_tau([3, 3, 0], [7, 5, 1]))
    assert judge["top1_agreement"]["n"] == 0  # the annotators tie for first


@pytest.mark.parametrize("rows, message", [
    ([{"id": "a", "options": OPTS}], r"row 1: field `rankings`"),
    ([{"id": "a", "rankings": {"alice": {"response_1": 1}}}], r"row 1: field `options`.*at least 2"),
    ([{"id": "a", "rankings": {"alice": _ranking([0, 1, 2, 3])}},
      {"id": "b", "rankings": {"alice": {"response_1": 1, "response_2": 2}},
       "options": OPTS}], r"row 2: field `rankings`.*'alice'"),
    ([{"id": "a", "rankings": {"alice": _ranking([0, 1, 2, 3])}}], r"field `judge_scores`.*no judge"),
    ([{"id": "a", "rankings": {"alice": _ranking([0, 1, 2, 3])},
       "judge_scores_x": [1, 2]}], r"row 1: field `judge_scores_x`.*expected 4 scores"),
    ([{"rankings": {"alice": _ranking([0, 1, 2, 3])}}], r"row 1: field `id`"),
])
def test_bad_records_exit_2(tmp_path, capsys, rows, message):
    src = _write(tmp_path / "records.jsonl", rows)
    assert align(["annotate", "calibrate", "--input", src]) == 2
    err = capsys.readouterr().err
    assert "records.jsonl" in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "calibration.json").exists()


def test_ranked_file_without_common_records_exits_2(tmp_path, capsys):
    rows, truths = _records(3)
    for row, truth in zip(rows, truths):
        row["judge_scores"] = truth
    src = _write(tmp_path / "records.jsonl", rows)
    other = _write(tmp_path / "other.jsonl",
                   [{"id": "zzz", "responses": ["x", "y"], "scores": [1, 2]}])
    assert align(["annotate", "calibrate", "--input", src, "--judges", f"j={other}"]) == 2
    err = capsys.readouterr().err
    assert "other.jsonl: field `id`: no row's id matches" in err
    bad = _write(tmp_path / "bad.jsonl", [{"id": "r0", "responses": ["x", "y", "z", "w"],
                                           "scores": [1, 2, 3, 4]}])
    assert align(["annotate", "calibrate", "--input", src, "--judges", bad]) == 2
    assert "bad.jsonl row 1: field `responses`: the responses differ" in capsys.readouterr().err


def test_bad_options_exit_2(tmp_path, capsys):
    rows, truths = _records(3)
    for row, truth in zip(rows, truths):
        row["judge_scores"] = truth
    src = _write(tmp_path / "records.jsonl", rows)
    assert align(["annotate", "calibrate", "--input", src, "--bins", "0"]) == 2
    assert "--bins" in capsys.readouterr().err
    assert align(["annotate", "calibrate", "--input", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err
