"""Bad input through `align data inspect|convert|pairs`: always exit 2, never a traceback.

Every input here is broken in one way a user's file can be: random bytes, the wrong text
encoding, truncated JSON, a wrong type in a known field, nesting deeper than any parser's
stack, multi-megabyte fields, empty files, one format under another's suffix, missing
columns, corrupted `save_to_disk` folders. For each, the command must exit 2 with a
message that names the file, print no traceback, and leave no output (or temp) file.

This is a fixed corpus, one input of each kind; `test_fuzz_inputs.py` draws many more of
the same kinds with hypothesis, through the same checks.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
from pathlib import Path

import pytest

from alignment.cli import main

COMMANDS = ("inspect", "convert", "pairs")

PREFERENCE = {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}
RANKED = {"prompt": "Name a colour.", "responses": ["red", "blue", "dog"],
          "scores": [5, 4, 1]}
# one value of each JSON kind, to put where a field expects another
WRONG_TYPES = (3, 2.5, True, None, [1, 2], ["text"], {"a": 1}, [{"role": "user"}], [])
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
DEEP = 100_000  # far past any recursion limit


# ----------------------------------------------------------------------------- running

def run_cli(command: str, source: Path, out_dir: Path) -> tuple[int, str]:
    """Exit code and stdout + stderr of `align data COMMAND SOURCE [OUT]`, in process.

    An exception escaping ``main`` is what a user sees as a traceback: it is raised.
    """
    argv = ["data", command, str(source)]
    if command == "convert":
        argv += ["--to", "sft", str(out_dir / "out.jsonl")]
    elif command == "pairs":
        argv += [str(out_dir / "out.jsonl")]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(argv)
    return code, buffer.getvalue()


def check_refused(command: str, name: str, content: bytes | dict[str, bytes]) -> None:
    """Write the input (a file, or a folder of files), run the command, check the refusal."""
    with tempfile.TemporaryDirectory() as tmp:
        source = write_input(Path(tmp) / "in", name, content)
        out_dir = Path(tmp) / "out"
        code, output = run_cli(command, source, out_dir)
        assert code == 2, f"exit {code}, output:\n{output[:2000]}"
        assert str(source) in output, output[:2000]
        assert "Traceback" not in output, output[:2000]
        # a message a person reads, not a megabyte of echoed input
        assert len(output) < 20_000, output[:2000]
        assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())


def write_input(folder: Path, name: str, content: bytes | dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
        return path
    for relative, data in content.items():
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        (path / relative).write_bytes(data)
    return path


# ----------------------------------------------------------------------------- encoders

def jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def csv_bytes(rows: list[dict]) -> bytes:
    import csv

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()})
    return text.getvalue().encode()


def parquet_bytes(columns: dict[str, list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def deep(levels: int, kind: str = "list") -> str:
    return "[" * levels + "]" * levels if kind == "list" else '{"a":' * levels + "1" + \
        "}" * levels


def save_to_disk_folder(rows: list[dict]) -> dict[str, bytes]:
    """The files of a `datasets` save_to_disk folder holding ``rows``."""
    import datasets

    with tempfile.TemporaryDirectory() as tmp:
        datasets.disable_progress_bars()
        try:
            datasets.Dataset.from_list(rows).save_to_disk(tmp)
        finally:
            datasets.enable_progress_bars()
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir()}


# ----------------------------------------------------------------------------- corpus

def corpus() -> list[tuple[str, str, bytes | dict[str, bytes]]]:
    """(case, file name, content): one input of every kind of breakage."""
    rng = random.Random(0)
    text = json.dumps({**PREFERENCE, "prompt": "Café au lait? Ça va."}, ensure_ascii=False)
    cases = [
        ("random bytes", "x.jsonl", bytes(rng.randrange(256) for _ in range(512))),
        ("random bytes", "x.json", bytes(rng.randrange(128, 256) for _ in range(512))),
        ("random bytes", "x.csv", b"prompt,chosen\n\xff\xfe\x00garbage\x81\n"),
        ("random bytes", "x.parquet", bytes(rng.randrange(256) for _ in range(512))),
        ("latin-1", "x.jsonl", (text + "\n").encode("latin-1")),
        ("latin-1", "x.csv", "prompt,chosen,rejected\nCafé?,oui,non\n".encode("latin-1")),
        ("utf-16", "x.json", ("[" + text + "]").encode("utf-16")),
        ("utf-16", "x.jsonl", (text + "\n").encode("utf-16")),
        ("truncated", "x.json", json.dumps([PREFERENCE] * 3).encode()[:-7]),
        ("truncated", "x.jsonl", jsonl([PREFERENCE] * 3)[:-9]),
        ("wrong type", "x.jsonl", jsonl([PREFERENCE, {**PREFERENCE, "chosen": 42}])),
        ("wrong type", "x.json", json.dumps([{**PREFERENCE, "prompt": ["a", "b"]}]).encode()),
        ("wrong type", "x.jsonl", jsonl([{**RANKED, "scores": "high"}])),
        ("wrong type", "x.jsonl", jsonl([{**RANKED, "responses": 7}])),
        ("deep", "x.json", deep(DEEP).encode()),
        ("deep", "x.jsonl", (deep(DEEP, "dict") + "\n").encode()),
        ("deep", "x.jsonl", jsonl([{**PREFERENCE, "chosen": json.loads(deep(500))}])),
        ("deep", "x.csv", b"prompt,chosen,rejected\n" + deep(DEEP).encode() + b",a,b\n"),
        ("huge", "x.jsonl", jsonl([{**RANKED, "scores": "9" * 3_000_000}])),
        ("huge", "x.jsonl", jsonl([{**RANKED, "scores": ["x" * 3_000_000, 1, 2]}])),
        ("huge", "x.jsonl", jsonl([{**PREFERENCE, "chosen": {"x": "y" * 3_000_000}}])),
        ("huge", "x.jsonl", jsonl([{**RANKED, "scores": [10 ** 400, 1, 2]}])),
        ("huge", "x.jsonl", b'{"prompt": "a", "responses": ["b", "c"], "scores": [1' +
         b"1" * 5000 + b', 2]}\n'),
        ("huge", "x.json", b'[{"prompt": "a", "responses": ["b", "c"], "scores": [1e999, 2]}]'),
        ("empty", "x.jsonl", b""),
        ("empty", "x.json", b""),
        ("empty", "x.json", b"[]"),
        ("empty", "x.csv", b""),
        ("empty", "x.csv", b"prompt,chosen,rejected\n"),
        ("empty", "x.parquet", b""),
        ("empty", "x.parquet", parquet_bytes({"prompt": [], "chosen": [], "rejected": []})),
        ("mixed", "x.jsonl", json.dumps([PREFERENCE], indent=1).encode()),
        ("mixed", "x.jsonl", json.dumps([PREFERENCE]).encode()),
        ("mixed", "x.json", csv_bytes([PREFERENCE])),
        ("mixed", "x.csv", jsonl([PREFERENCE])),
        ("mixed", "x.parquet", jsonl([PREFERENCE])),
        ("mixed", "x.jsonl", parquet_bytes({"prompt": ["a"]})),
        ("missing", "x.parquet", parquet_bytes({"prompt": ["a"], "chosen": ["b"]})),
        ("missing", "x.parquet", parquet_bytes({"prompt": ["a"], "chosen": ["b"],
                                                 "rejected": [None]})),
        ("missing", "x.csv", b"prompt,chosen,rejected\na,b\n"),
        ("missing", "x.jsonl", jsonl([PREFERENCE, {"prompt": "a", "chosen": "b"}])),
        ("wrong top level", "x.json", b'"a string"'),
        ("wrong top level", "x.json", b"42"),
        ("wrong top level", "x.json", b'{"rows": 3}'),
        ("wrong top level", "x.jsonl", b"[1, 2]\n"),
        ("wrong top level", "x.jsonl", b"null\n"),
    ]
    good = save_to_disk_folder([PREFERENCE, PREFERENCE])
    arrow = next(k for k in good if k.endswith(".arrow"))
    cases += [
        ("save_to_disk", "ds", {**good, arrow: good[arrow][: len(good[arrow]) // 2]}),
        ("save_to_disk", "ds", {**good, arrow: bytes(rng.randrange(256) for _ in range(300))}),
        ("save_to_disk", "ds", {**good, "state.json": b"\xff\xfe not json"}),
        ("save_to_disk", "ds", {**good, "dataset_info.json": b"[1, 2"}),
        ("save_to_disk", "ds", {"dataset_dict.json": b'{"splits": ["train"]}',
                                **{f"train/{k}": v for k, v in good.items()},
                                "train/state.json": b"{"}),
        ("shards", "ds", {"train-0.jsonl": jsonl([PREFERENCE]), "train-1.jsonl": b"\x80\x81"}),
    ]
    return cases


CORPUS = corpus()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case,name,content", CORPUS,
                         ids=[f"{c}-{n}-{i}" for i, (c, n, _) in enumerate(CORPUS)])
def test_bad_input_is_refused_cleanly(command, case, name, content):
    check_refused(command, name, content)


def test_errors_name_the_row_and_field(tmp_path, capsys):
    source = tmp_path / "prefs.jsonl"
    source.write_bytes(jsonl([PREFERENCE, PREFERENCE, {**PREFERENCE, "chosen": 42}]))
    assert main(["data", "convert", str(source), "--to", "sft", str(tmp_path / "o.jsonl")]) == 2
    assert f"{source} row 3: field `chosen`: expected text" in capsys.readouterr().err
    source.write_bytes(jsonl([PREFERENCE]) + b'{"prompt": "caf\xe9"}\n')
    assert main(["data", "inspect", str(source)]) == 2
    assert f"{source} row 2: not UTF-8 text" in capsys.readouterr().err


def test_errors_locate_encoding_nesting_and_csv_faults(tmp_path, capsys):
    cases = {
        "utf16.jsonl": ((json.dumps(PREFERENCE) + "\n").encode("utf-16"), "row 1: is UTF-16"),
        "deep.csv": (b"prompt,chosen,rejected\nq,a,b\n" + deep(DEEP).encode() + b",a,b\n",
                     "row 2: field `prompt`: nested too deeply"),
        "deep.jsonl": (jsonl([PREFERENCE]) + (deep(DEEP) + "\n").encode(),
                       "row 2: nested too deeply"),
        "nul.csv": (b"prompt,chosen,rejected\nq,a,b\nq,\x00,b\n", "row 3: holds NUL bytes"),
        "digits.jsonl": (b'{"prompt": "a", "responses": ["b", "c"], "scores": [' +
                         b"1" * 400 + b", 2]}\n", "row 1: field `scores[0]`: expected a "
                                                 "finite number, got 1111"),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert main(["data", "inspect", str(tmp_path / name)]) == 2
        assert f"{tmp_path / name} {expected}" in capsys.readouterr().err, name


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    """Spreadsheet exports start with one; it is not part of the first column's name."""
    from alignment.data import read_rows

    (tmp_path / "x.csv").write_bytes(b"\xef\xbb\xbfprompt,chosen,rejected\nq,a,b\n")
    (tmp_path / "x.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl([PREFERENCE]))
    assert read_rows(tmp_path / "x.csv") == [{"prompt": "q", "chosen": "a", "rejected": "b"}]
    assert read_rows(tmp_path / "x.jsonl") == [PREFERENCE]


def test_training_loader_refuses_the_same_inputs():
    from alignment.data import load_preferences
    from alignment.errors import DataError

    for _, name, content in CORPUS:
        with tempfile.TemporaryDirectory() as tmp:
            source = write_input(Path(tmp) / "in", name, content)
            with pytest.raises(DataError, match=str(source).replace("\\", "\\\\")):
                load_preferences(str(source))


def test_dpo_refuses_bad_data(tiny_model, tmp_path, capsys):
    source = tmp_path / "prefs.jsonl"
    source.write_bytes(bytes(range(256)))
    assert main(["dpo", "--dataset", str(source), "--model", str(tiny_model),
                 "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert str(source) in err and "Traceback" not in err
