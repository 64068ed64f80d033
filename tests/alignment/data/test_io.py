"""Reading every supported file and folder layout, atomic writes, dataset cards."""

from __future__ import annotations

import json

import pytest

from alignment.data import read_card, read_rows, write_card, write_rows
from alignment.errors import DataError
from tests.helpers import DATASETS


ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Sleep well."},
    {"instruction": "Translate the sentence into Spanish.", "input": "Hello, how are you?",
     "output": "Hola, ¿cómo estás?"},
]


def test_json_array_and_csv_read_the_same_rows():
    assert read_rows(DATASETS / "alpaca.json") == ALPACA
    assert read_rows(DATASETS / "alpaca.csv") == ALPACA


def test_json_object_holding_a_list(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 1, "data": ALPACA}))
    assert read_rows(path) == ALPACA


def test_json_file_that_is_really_json_lines(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text("\n".join(json.dumps(r) for r in ALPACA))
    assert read_rows(path) == ALPACA


def test_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n\n" + json.dumps(ALPACA[1]) + "\n")
    assert read_rows(path) == ALPACA


def test_csv_decodes_json_cells_of_structured_columns(tmp_path):
    path = tmp_path / "m.csv"
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["messages", "note"])
        w.writerow([json.dumps(msgs), "[not json"])
    assert read_rows(path) == [{"messages": msgs, "note": "[not json"}]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ""])
def test_write_then_read_round_trip(tmp_path, suffix):
    rows = [{"prompt": [{"role": "user", "content": "hi"}],
             "chosen": [{"role": "assistant", "content": "hello"}],
             "rejected": [{"role": "assistant", "content": "go away"}], "score_chosen": 2.0}]
    out = write_rows(rows, tmp_path / f"prefs{suffix}")
    assert read_rows(out) == rows
    # nothing but the dataset itself is left in the folder
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_save_to_disk_folder_replaces_an_existing_one(tmp_path):
    target = tmp_path / "ds"
    write_rows([{"a": 1}], target)
    write_rows([{"a": 2}, {"a": 3}], target)
    assert read_rows(target) == [{"a": 2}, {"a": 3}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_dataset_dict_folder_picks_train_or_named_split(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"x": "a"}]),
                               "test": datasets.Dataset.from_list([{"x": "b"}])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert read_rows(tmp_path / "dd") == [{"x": "a"}]
    assert read_rows(f"{tmp_path / 'dd'}:test") == [{"x": "b"}]
    with pytest.raises(DataError, match="no split `dev`; available: train, test"):
        read_rows(f"{tmp_path / 'dd'}:dev")


def test_folder_of_shards_by_split(tmp_path):
    folder = tmp_path / "repo" / "data"
    write_rows([{"x": 1}], folder / "train-00000-of-00002.parquet")
    write_rows([{"x": 2}], folder / "train-00001-of-00002.parquet")
    write_rows([{"x": 9}], folder / "test-00000-of-00001.jsonl")
    assert read_rows(tmp_path / "repo") == [{"x": 1}, {"x": 2}]
    assert read_rows(f"{tmp_path / 'repo'}:test") == [{"x": 9}]


def test_folder_of_unnamed_shards_reads_all(tmp_path):
    write_rows([{"x": 1}], tmp_path / "s" / "part-0.jsonl")
    write_rows([{"x": 2}], tmp_path / "s" / "part-1.jsonl")
    assert read_rows(tmp_path / "s") == [{"x": 1}, {"x": 2}]


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3,,}\n')
    with pytest.raises(DataError) as e:
        read_rows(path)
    assert e.value.path == str(path) and e.value.row == 3
    assert "not valid JSON" in str(e.value) and "line 3" in str(e.value)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"row 2: line 2 holds a JSON list"):
        read_rows(path)


@pytest.mark.parametrize("name,content,pattern", [
    ("x.txt", "hello", "unsupported file type `.txt`"),
    ("x.json", '{"a": [1], "b": [2]}', "must hold the rows as a list under one key"),
    ("x.json", '[{"a": 1}, 3]', r"row 2: item is a JSON int"),
    ("x.parquet", "not parquet", "cannot read as Parquet"),
    ("x.csv", "a,b\n1,2,3\n", r"row 1: more cells than header columns"),
])
def test_bad_files_raise_data_error(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=pattern):
        read_rows(path)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_rows(tmp_path / "nope.jsonl")


def test_failed_parquet_write_leaves_nothing_behind(tmp_path):
    rows = [{"prompt": "text"}, {"prompt": [{"role": "user", "content": "a conversation"}]}]
    with pytest.raises(DataError, match="do not share one column type"):
        write_rows(rows, tmp_path / "mixed.parquet")
    with pytest.raises(DataError, match="do not share one column type"):
        write_rows(rows, tmp_path / "mixed_folder")
    assert list(tmp_path.iterdir()) == []


def test_card_beside_a_file_and_inside_a_folder(tmp_path):
    info = {"teacher": "smollm2", "counts": {"rows": 3, "parse_failures": 1},
            "template": "Rate this:\n{response}", "seeds": [0, 1]}
    card = write_card(tmp_path / "out.jsonl", "Ratings", info)
    assert card == tmp_path / "out.README.md"
    text = card.read_text()
    assert text.startswith("---\npretty_name: \"Ratings\"\n")
    assert "# Ratings" in text and "- **parse_failures**: 1" in text
    assert "```\nRate this:\n{response}\n```" in text
    assert read_card(tmp_path / "out.jsonl") == info
    assert write_card(tmp_path / "ds", "T", {}) == tmp_path / "ds" / "README.md"


def test_single_row_json_object_is_one_row(tmp_path):
    row = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(row))
    assert read_rows(path) == [row]


def test_refuses_to_replace_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="exists and is not a dataset folder"):
        write_rows([{"a": 1}], tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from alignment.data import write_rows

    mask = os.umask(0o022)
    try:
        path = write_rows([{"prompt": "a", "chosen": "b", "rejected": "c"}], tmp_path / "p.jsonl")
        folder = write_rows([{"prompt": "a", "chosen": "b", "rejected": "c"}], tmp_path / "ds")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
