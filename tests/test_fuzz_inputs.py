"""Fuzzed bad input through `align data inspect|convert|pairs` (see test_bad_inputs.py).

Hypothesis draws inputs of every kind the fixed corpus holds; each must exit 2 naming the
file, print no traceback and leave no output. ``derandomize=True``: CI sees the same
inputs every run; raise ``max_examples`` locally to search further.
"""

from __future__ import annotations

import functools
import json

import pytest

from tests.helpers import (COMMANDS, DEEP, PREFERENCE, RANKED, SUFFIXES, WRONG_TYPES,
                                   check_refused, csv_bytes, deep, jsonl, parquet_bytes,
                                   save_to_disk_folder)

pytest.importorskip("hypothesis", reason="the fuzz test needs hypothesis (pip install "
                                         "hypothesis); test_bad_inputs.py runs without it")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# a row of text in one of the two families each command reads
rows_of = st.sampled_from([PREFERENCE, RANKED]).flatmap(
    lambda row: st.lists(st.just(row), min_size=1, max_size=4))


@st.composite
def random_bytes(draw):
    return draw(st.sampled_from(SUFFIXES)), draw(st.binary(min_size=1, max_size=2048))


@st.composite
def wrong_encoding(draw):
    rows = draw(rows_of)
    accented = draw(st.text(st.characters(min_codepoint=0xC0, max_codepoint=0xFF),
                            min_size=1, max_size=20))
    rows = [{**rows[0], "prompt": rows[0]["prompt"] + accented}] + rows[1:]
    suffix = draw(st.sampled_from((".jsonl", ".json", ".csv")))
    # the accents stay characters (ensure_ascii=False), so the encoding shows in the bytes
    text = {".jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
            ".json": json.dumps(rows, ensure_ascii=False),
            ".csv": csv_bytes(rows).decode()}[suffix]
    return suffix, text.encode(draw(st.sampled_from(("latin-1", "utf-16", "utf-16-le"))))


@st.composite
def truncated(draw):
    rows = draw(rows_of)
    suffix = draw(st.sampled_from((".jsonl", ".json")))
    data = (jsonl(rows) if suffix == ".jsonl" else json.dumps(rows).encode()).rstrip(b"\n")
    # cut inside the last row (a cut between rows leaves a shorter, valid file)
    start = data.rfind(b"\n") + 1 if suffix == ".jsonl" else 1
    return suffix, data[:draw(st.integers(start + 1, len(data) - 1))]


@st.composite
def wrong_type(draw):
    rows = [dict(r) for r in draw(rows_of)]
    row = draw(st.integers(0, len(rows) - 1))
    field = draw(st.sampled_from(sorted(rows[row])))
    rows[row][field] = draw(st.sampled_from(WRONG_TYPES))
    return draw(st.sampled_from((".jsonl", ".json"))), (
        jsonl(rows) if draw(st.booleans()) else json.dumps(rows).encode())


@st.composite
def nested(draw):
    levels = draw(st.sampled_from((DEEP, 5_000, 1_000, 900)))
    kind = draw(st.sampled_from(("list", "dict")))
    where = draw(st.sampled_from(("top", "field")))
    value = deep(levels, kind)
    suffix = draw(st.sampled_from((".jsonl", ".json", ".csv")))
    if suffix == ".csv":
        cell = '"' + value.replace('"', '""') + '"'
        return suffix, f"prompt,chosen,rejected\n{cell},a,b\n".encode()
    if where == "field":
        value = '{"prompt": "q", "chosen": ' + value + ', "rejected": "r"}'
    return suffix, (value + "\n" if suffix == ".jsonl" else value).encode()


@st.composite
def huge(draw):
    size = draw(st.integers(1_000_000, 4_000_000))
    field = draw(st.sampled_from(("scores", "scores[0]", "chosen", "responses")))
    row = dict(RANKED if field != "chosen" else PREFERENCE)
    filler = draw(st.sampled_from("9xé")) * size
    # each a wrong type or value, some of the kind an error message would quote
    row[field.split("[")[0]] = {"chosen": {"v": filler}, "scores[0]": [filler, 1, 2]}.get(
        field, filler)
    return ".jsonl", jsonl([row])


@st.composite
def empty(draw):
    return draw(st.sampled_from([
        (".jsonl", b""), (".jsonl", b"\n\n  \n"), (".json", b""), (".json", b"[]"),
        (".json", b"{}"), (".csv", b""), (".csv", b"prompt,chosen,rejected\n"),
        (".parquet", b""), (".parquet", parquet_bytes({"prompt": [], "chosen": []}))]))


@st.composite
def mixed(draw):
    rows = draw(rows_of)
    written = draw(st.sampled_from(("json", "jsonl", "csv", "parquet")))
    suffix = draw(st.sampled_from([s for s in SUFFIXES if s != f".{written}"]))
    if written == "json" and suffix == ".jsonl" and not draw(st.booleans()):
        return suffix, json.dumps(rows, indent=1).encode()  # a pretty array: one row per line
    if written == "jsonl" and suffix == ".json" and len(rows) == 1:
        rows = rows * 2  # one line is a valid JSON document: the reader accepts it
    data = {"json": lambda: json.dumps(rows).encode(), "jsonl": lambda: jsonl(rows),
            "csv": lambda: csv_bytes(rows),
            "parquet": lambda: parquet_bytes({k: [json.dumps(r[k]) for r in rows]
                                              for k in rows[0]})}[written]()
    if (written, suffix) == ("jsonl", ".json"):
        # JSON Lines in a .json file is a known publishing habit, read as such; break a line
        data = data.replace(b"}\n", b"}\n{\n", 1)
    return suffix, data


@st.composite
def missing_columns(draw):
    row = draw(st.sampled_from([PREFERENCE, RANKED]))
    keep = draw(st.lists(st.sampled_from(sorted(row)), min_size=1, max_size=len(row) - 1,
                         unique=True))
    partial = {k: row[k] for k in keep}
    suffix = draw(st.sampled_from((".parquet", ".csv", ".jsonl")))
    rows = [row, partial] if suffix == ".jsonl" else [partial]
    if suffix == ".parquet":
        return suffix, parquet_bytes({k: [json.dumps(v) if not isinstance(v, str) else v]
                                      for k, v in partial.items()})
    return suffix, csv_bytes(rows) if suffix == ".csv" else jsonl(rows)


@functools.cache
def saved_folder() -> dict[str, bytes]:
    return save_to_disk_folder([PREFERENCE, PREFERENCE])


@st.composite
def damaged_folder(draw):
    """A `save_to_disk` folder with one of its files cut short or overwritten."""
    files = dict(saved_folder())
    name = draw(st.sampled_from(sorted(files)))
    data = files[name]
    # an Arrow stream without its 8-byte end marker still reads: cut at least 9 bytes
    end = len(data) - 9 if name.endswith(".arrow") else len(data) - 1
    if draw(st.booleans()):
        files[name] = data[:draw(st.integers(0, end))]
    else:
        files[name] = draw(st.binary(min_size=1, max_size=512))
    return "", files


bad_inputs = st.one_of(random_bytes(), wrong_encoding(), truncated(), wrong_type(), nested(),
                       huge(), empty(), mixed(), missing_columns(), damaged_folder())


@pytest.mark.parametrize("command", COMMANDS)
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bad=bad_inputs)
def test_fuzzed_bad_input_is_refused_cleanly(command, bad):
    suffix, content = bad
    check_refused(command, f"data{suffix}", content)
