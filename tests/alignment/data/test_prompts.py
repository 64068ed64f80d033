"""The one prompt reader: every command that takes prompts reads them through it."""

from __future__ import annotations

import json

import pytest

from alignment.data import prompt_rows, read_prompt_rows, read_prompts
from alignment.errors import DataError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_each_place_a_prompt_can_be(tmp_path):
    rows = [{"prompt": " Plain. ", "task": "t1", "verifiers": [{"name": "lowercase"}]},
            {"instruction": "Sum these.", "input": "1 2", "id": "a"},
            {"messages": [{"role": "system", "content": "s"},
                          {"role": "user", "content": "Hi there"},
                          {"role": "assistant", "content": "Hello"}]},
            {"question": "Why?", "split": "test"},
            {"task": "Describe rain.", "category": "weather"}]
    got = read_prompt_rows(write(tmp_path / "p.jsonl", rows))
    assert [r["prompt"] for r in got] == ["Plain.", "Sum these.\n\n1 2", "Hi there", "Why?",
                                          "Describe rain."]
    # the other fields come along; a `task` leaves only when it was the prompt
    assert got[0] == {"prompt": "Plain.", "task": "t1", "verifiers": [{"name": "lowercase"}]}
    assert got[1] == {"prompt": "Sum these.\n\n1 2", "id": "a"}
    assert got[3] == {"prompt": "Why?", "split": "test"}
    assert got[4] == {"prompt": "Describe rain.", "category": "weather"}


def test_repeats_limits_and_text_files(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "a"}, {"prompt": "b"}])
    assert read_prompts(path) == ["a", "b"]
    assert read_prompts(path, distinct=False) == ["a", "a", "b"]
    assert read_prompts(path, limit=1) == ["a"]
    txt = tmp_path / "p.txt"
    txt.write_bytes("\ufefffirst\n\n  second  \n".encode())
    assert read_prompts(txt) == ["first", "second"]


def test_a_row_without_a_prompt_is_named(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"text": "no"}])
    with pytest.raises(DataError, match=r"row 2.*`prompt`"):
        read_prompts(path)
    with pytest.raises(DataError, match="row 1"):
        prompt_rows([{"prompt": "   "}], "mem")


def test_conversations_where_they_are_accepted():
    chat = [{"role": "user", "content": "Hi"}]
    assert prompt_rows([{"prompt": chat}], "mem", conversations=True) == [{"prompt": chat}]
    with pytest.raises(DataError, match="ending with a user turn"):
        prompt_rows([{"prompt": chat + [{"role": "assistant", "content": "Yo"}]}], "mem",
                    conversations=True)
    with pytest.raises(DataError, match="no prompt text"):  # text only, elsewhere
        prompt_rows([{"prompt": chat}], "mem")
