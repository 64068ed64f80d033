"""`align data ...` end to end through the top-level CLI."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from alignment.cli import main
from alignment.data import read_card, read_rows
from tests.helpers import DATASETS


@pytest.mark.parametrize("argv", [["data", "--help"], ["data", "inspect", "--help"],
                                  ["data", "convert", "--help"], ["data", "pairs", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: align data" in capsys.readouterr().out


def test_inspect(capsys):
    assert main(["data", "inspect", str(DATASETS / "ultrafeedback.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "format:  ultrafeedback (converts via the `ranked` schema)" in out
    assert "rows:    1" in out and "columns: source, instruction, models" in out
    assert re.search(r"instruction +min 36  mean 36.0  median 36.0  max 36", out)
    assert "completions " not in out.split("first row")[0]  # no length for nested objects
    assert '"source": "evol_instruct"' in out


def test_convert_writes_rows_and_card(tmp_path, capsys):
    out = tmp_path / "prefs.parquet"
    assert main(["data", "convert", str(DATASETS / "hh_rlhf.jsonl"), "--to", "preference",
                 str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 2 and rows[0]["rejected"] == [{"role": "assistant",
                                                       "content": "I don't know."}]
    card = read_card(out)
    assert card["source_format"] == "hh-rlhf"
    assert card["counts"] == {"input_rows": 3, "identical_pairs_dropped": 1, "output_rows": 2}
    assert "-> " + str(out) in capsys.readouterr().out


def test_convert_to_folder_with_dedup(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Hello there", "output": "a"}, {"instruction": "hello, there!", "output": "b"},
        {"instruction": "Bye", "output": "c"}]))
    out = tmp_path / "sft"
    assert main(["data", "convert", str(src), "--to", "sft", str(out), "--dedup"]) == 0
    assert [r["messages"][1]["content"] for r in read_rows(out)] == ["a", "c"]
    assert read_card(out)["counts"]["duplicates_removed"] == 1


def test_pairs_command(tmp_path):
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "pairs", str(DATASETS / "align_ranked.jsonl"), str(out), "--strategy",
                 "all", "--margin", "3"]) == 0
    assert [(r["chosen"], r["rejected"]) for r in read_rows(out)] == [
        ("Apple.", "A car."), ("Banana, a yellow fruit.", "A car.")]
    card = read_card(out)
    assert card["conversion"] == {"to": "preference", "strategy": "all", "margin": 3.0,
                                  "seed": 0, "keep_truncated": False}
    assert card["counts"]["pairs_null_scores"] == 1 and card["counts"]["pairs_ties"] == 1
    assert card["counts"]["pairs_below_margin"] == 1


def test_pairs_refuses_unranked_input(tmp_path, capsys):
    assert main(["data", "pairs", str(DATASETS / "alpaca.json"), str(tmp_path / "p.jsonl")]) == 2
    assert "needs ranked rows" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content,row,field,pattern", [
    ('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"\n', 2, None,
     "not valid JSON"),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', 2, "output", "is missing"),
    ('{"instruction": "a", "output": ["b"]}\n', 1, "output", "expected text, got list"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, content, row, field, pattern):
    src = tmp_path / "in" / "bad.jsonl"
    src.parent.mkdir()
    src.write_text(content)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for out in (out_dir / "sft.jsonl", out_dir / "sft_folder"):
        assert main(["data", "convert", str(src), "--to", "sft", str(out)]) == 2
        err = capsys.readouterr().err
        where = f"{src} row {row}" + (f": field `{field}`" if field else "")
        assert err.startswith(f"align data: error: {where}: ") and pattern in err
    assert list(out_dir.iterdir()) == []


def test_existing_output_survives_a_failed_conversion(tmp_path):
    out = tmp_path / "sft.jsonl"
    assert main(["data", "convert", str(DATASETS / "alpaca.json"), "--to", "sft", str(out)]) == 0
    before = out.read_text()
    bad = tmp_path / "bad.jsonl"
    shutil.copy(DATASETS / "sharegpt.jsonl", bad)
    with open(bad, "a") as f:
        f.write('{"conversations": [{"from": "alien", "value": "x"}]}\n')
    assert main(["data", "convert", str(bad), "--to", "sft", str(out)]) == 2
    assert out.read_text() == before
