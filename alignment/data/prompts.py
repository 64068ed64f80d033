"""Prompts from any file: the one reader and validator behind every command that takes
prompts (the generation pipelines' ``--prompts`` and ``--seeds``, ``align rloo/grpo
--dataset``).

A prompt file is anything :func:`alignment.data.read_rows` reads, or a ``.txt`` with one
prompt per line. A row's prompt is the first of:

- ``prompt``: a text (or, where conversations are accepted, a list of messages ending
  with a user turn);
- ``instruction``, with an Alpaca ``input`` appended as a new paragraph;
- the first user turn of ``messages``;
- ``question``, ``task`` or ``input``: the other names seed files give it.

Its other fields (``verifiers``, ``task``, ``source``, ``split``, ...) come along
unchanged. A row without a prompt is a DataError naming the file and the row.
"""

from __future__ import annotations

from pathlib import Path

from alignment.errors import DataError

# the fields a prompt is read from, which never come along as other fields; a seed
# file's `question` or `task` leaves the row only when it was the prompt
PROMPT_FIELDS = ("prompt", "instruction", "input", "messages")
SEED_FIELDS = ("question", "task", "input")


def _prompt_field(row: dict, conversations: bool) -> str | None:
    """Which field holds the row's prompt (see the module doc), or None."""
    if isinstance(row.get("prompt"), str) or (conversations and isinstance(row.get("prompt"),
                                                                            list)):
        return "prompt"
    if isinstance(row.get("instruction"), str):
        return "instruction"
    if isinstance(row.get("messages"), list):
        return "messages"
    return next((f for f in SEED_FIELDS if isinstance(row.get(f), str)), None)


def prompt_of(row: dict, path: object, row_no: int, *,
              conversations: bool = False) -> str | list[dict]:
    """The prompt of one row (see the module doc): stripped text, or with
    ``conversations`` a message list ending with a user turn."""
    field = _prompt_field(row, conversations)
    value = row.get(field) if field else None
    if field == "prompt" and isinstance(value, list):
        if value and isinstance(value[-1], dict) and value[-1].get("role") == "user":
            return value
        raise DataError(path, "expected a non-empty text or a conversation ending with a "
                              "user turn", row=row_no, field="prompt")
    if field == "instruction" and row.get("input"):
        value += "\n\n" + str(row["input"])
    elif field == "messages":
        value = next((m.get("content") for m in value
                      if isinstance(m, dict) and m.get("role") == "user"), None)
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, "no prompt text; give each row a `prompt` or `instruction` "
                              "string, or `messages` with a user turn (seed files may say "
                              "`question`, `task` or `input`)", row=row_no, field="prompt")
    return value.strip()


def prompt_rows(rows: list[dict], path: object, limit: int | None = None, *,
                distinct: bool = True, conversations: bool = False) -> list[dict]:
    """``{"prompt": prompt, **other fields}`` per row; with ``distinct`` one per prompt
    (the first row that has it), and at most ``limit`` of them."""
    from alignment.data.formats import prompt_id

    out: dict[str, dict] = {}
    for i, row in enumerate(rows, start=1):
        prompt = prompt_of(row, path, i, conversations=conversations)
        key = prompt_id(prompt) if distinct else str(i)
        if key not in out:
            used = {*PROMPT_FIELDS, _prompt_field(row, conversations)}
            out[key] = {"prompt": prompt, **{k: v for k, v in row.items() if k not in used}}
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise DataError(path, "no prompts in the file")
    return list(out.values())


def read_prompt_rows(path: str | Path, limit: int | None = None, *,
                     distinct: bool = True) -> list[dict]:
    """:func:`prompt_rows` of a prompt file (a ``.txt``: one prompt per non-blank line)."""
    from alignment.data.io import read_lines, read_rows

    if Path(path).suffix.lower() == ".txt":
        rows = [{"prompt": line} for line in read_lines(path)]
    else:
        rows = read_rows(path)
    return prompt_rows(rows, path, limit, distinct=distinct)


def read_prompts(path: str | Path, limit: int | None = None, *,
                 distinct: bool = True) -> list[str]:
    """The prompt texts of a prompt file (see :func:`read_prompt_rows`)."""
    return [row["prompt"] for row in read_prompt_rows(path, limit, distinct=distinct)]


def is_prompt_list(rows: list[dict]) -> bool:
    """Whether rows are bare prompts rather than a dataset format: only ``prompt`` (with
    ``id``/``source``), or, when some row carries ``verifiers``, a ``prompt`` with any
    metadata whose columns make no data format."""
    from alignment.data.formats import FORMATS

    columns = set(rows[0])
    if columns <= {"prompt", "id", "source"}:
        return True
    checked = any(isinstance(r, dict) and r.get("verifiers") is not None for r in rows)
    return checked and "prompt" in columns and not any(
        columns.issuperset(required) for required in FORMATS.values())
