"""Raw text for continued pre-training: documents from text files, folders and tables.

A ``--dataset`` of ``align pretrain`` is one of

- a ``.txt`` or ``.md`` file: one document, or with ``split="paragraph"`` one document per
  paragraph (text between blank lines);
- a folder: every ``.txt`` and ``.md`` file under it, in path order, read as above;
- a table ``align data`` reads (JSONL, JSON, Parquet, CSV, a ``datasets`` folder with
  ``.arrow`` files): one document per row, from the ``text_field`` column.

Every document must hold some text: an empty file, paragraph-free file or row is an error
naming the file and row, never a silent drop.
"""

from __future__ import annotations

from pathlib import Path

from alignment.data.io import FILE_SUFFIXES, _text, read_rows
from alignment.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")
SPLITS = ("file", "paragraph")


def _text_file(path: Path, split: str) -> list[dict]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read the file ({e.strerror or e})") from None
    text = _text(path, data).replace("\r\n", "\n")
    if not text.strip():
        raise DataError(path, "holds no text; drop the file or write something in it")
    if split == "file":
        return [{"text": text.strip(), "source": str(path)}]
    docs, block, start = [], [], 0
    for number, line in enumerate([*text.split("\n"), ""], start=1):
        if line.strip():
            start = start or number
            block.append(line)
        elif block:
            docs.append({"text": "\n".join(block).strip(), "source": f"{path}:{start}"})
            block, start = [], 0
    return docs


def _table(path: Path, text_field: str) -> list[dict]:
    docs = []
    for i, row in enumerate(read_rows(path), start=1):
        value = row.get(text_field)
        if value is None:
            fields = ", ".join(sorted(row)) or "none"
            raise DataError(path, f"missing; pass --text_field NAME to read another column "
                            f"(this row has: {fields})", row=i, field=text_field)
        if not isinstance(value, str):
            raise DataError(path, f"must be text, got {type(value).__name__}", row=i,
                            field=text_field)
        if not value.strip():
            raise DataError(path, "empty; every document needs some text", row=i,
                            field=text_field)
        docs.append({"text": value, "source": f"{path}:{i}"})
    return docs


def read_texts(spec: str | Path, text_field: str = "text", split: str = "file") -> list[dict]:
    """The documents of one ``--dataset``: ``{"text", "source"}`` rows, in order."""
    if split not in SPLITS:
        raise DataError(spec, f"unknown split `{split}`; use one of {', '.join(SPLITS)}")
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if files:
            return [d for f in files for d in _text_file(f, split)]
        return _table(path, text_field)  # a saved dataset or a folder of tables
    if path.suffix.lower() in TEXT_SUFFIXES:
        if not path.is_file():
            raise DataError(path, "no such file; check the path")
        return _text_file(path, split)
    if path.suffix.lower() in FILE_SUFFIXES or not path.exists():
        return _table(path, text_field)
    raise DataError(path, f"unsupported file type `{path.suffix or '(none)'}`; use "
                          f"{', '.join(TEXT_SUFFIXES)} text, a folder of them, or a table "
                          f"({', '.join(FILE_SUFFIXES)}) with a `{text_field}` column")
