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

import json
import tempfile
from pathlib import Path

import pytest

from alignment.cli import main
from tests.helpers import (COMMANDS, CORPUS, DEEP, PREFERENCE, check_refused, deep, jsonl,
                          write_input)


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
