"""Rows on disk: read any supported file or folder into ``list[dict]``, write atomically.

Readable: ``.jsonl``/``.ndjson``, ``.json`` (an array, or an object holding one list of
rows), ``.parquet``, ``.csv``/``.tsv``, a ``datasets`` ``save_to_disk`` folder (a
``Dataset`` or a ``DatasetDict``), and a folder of parquet/jsonl/json shards (the
layout of a dataset repository). ``PATH:SPLIT`` picks a split from a ``DatasetDict``
or sharded folder; without it, ``train`` is used.

Writes go to a temporary file or folder beside the target and are moved into place
with ``os.replace``, so a failed write never leaves a half-written dataset behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alignment.data.formats import names
from alignment.errors import DataError, WriteError

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv")
DEFAULT_SPLIT = "train"
# A row nested deeper than this is not a dataset row; refusing it at the reader keeps
# Python's recursion limit (about 1000 frames, which json.loads obeys too) out of every
# later step.
MAX_DEPTH = 100

# Columns whose CSV cells are decoded as JSON when they hold a list or object;
# other cells stay text, so a prompt that happens to look like JSON is not mangled.
_STRUCTURED_COLUMNS = {
    "messages", "conversations", "completions", "answers", "responses", "models",
    "scores", "judge_raw", "ratings", "rationales", "ranks", "prompt", "chosen",
    "rejected", "completion",
}


def split_spec(path: str | Path) -> tuple[Path, str | None]:
    """``data/ds:test`` -> (``data/ds``, ``"test"``); a path that exists is taken whole."""
    text = str(path)
    if Path(text).exists() or ":" not in text:
        return Path(text), None
    base, _, split = text.rpartition(":")
    if not base or "/" in split or "\\" in split:
        return Path(text), None
    return Path(base), split


def read_rows(path: str | Path) -> list[dict]:
    """Read every row of a file or folder as plain Python dicts (see module doc)."""
    base, split = split_spec(path)
    if not base.exists():
        raise DataError(base, "no such file or folder; check the path (use PATH:SPLIT "
                              "to pick a split of a dataset folder)")
    if base.is_dir():
        return _read_folder(base, split)
    if split is not None:
        raise DataError(base, f"`:{split}` picks a split, but this is a single file; "
                              "drop the suffix")
    return _read_file(base)


def read_lines(path: str | Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped (a byte-order mark dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file; check the path")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read the file ({e.strerror or e})") from None
    return [line.strip() for line in _text(path, data).splitlines() if line.strip()]


def _read_file(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json,
               ".parquet": _read_parquet, ".csv": lambda p: _read_csv(p, delimiter=","),
               ".tsv": lambda p: _read_csv(p, delimiter="\t")}
    if suffix not in readers:
        raise DataError(path, f"unsupported file type `{suffix or '(none)'}`; use one of "
                              f"{', '.join(FILE_SUFFIXES)} or a `datasets` folder")
    try:
        return readers[suffix](path)
    except OSError as e:  # unreadable: permissions, a folder named like a file, ...
        raise DataError(path, f"cannot read the file ({e.strerror or e})") from None


def _text(path: Path, data: bytes, first_line: int = 1) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped), or a DataError saying where
    it is not; ``first_line`` is the line number ``data`` starts at."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(path, "is UTF-16 text; re-save it as UTF-8", row=first_line)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        column = e.start - data.rfind(b"\n", 0, e.start)
        raise DataError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column})"
                              f"; {_binary_hint(path, data)}", row=line) from None
    if "\x00" in text:
        line = first_line + text.count("\n", 0, text.index("\x00"))
        raise DataError(path, f"holds NUL bytes, so it is not text; {_binary_hint(path, data)}",
                        row=line)
    return text


def _binary_hint(path: Path, data: bytes) -> str:
    if data.startswith(b"PAR1"):
        return f"this is a Parquet file: rename it to {path.stem}.parquet"
    if b"\x00" in data[:4096]:
        return ("is it UTF-16 or a binary file? align reads UTF-8 text "
                f"({', '.join(s for s in FILE_SUFFIXES if s != '.parquet')}) and .parquet")
    return "re-save the file as UTF-8 (it may be latin-1 or another legacy encoding)"


def _parse_json(path: Path, text: str, row: int | None) -> Any:
    """``json.loads``, with nesting deeper than :data:`MAX_DEPTH` a DataError."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(path, row) from None
    except json.JSONDecodeError:
        raise
    except ValueError as e:  # Python refuses integers of more than 4300 digits
        raise DataError(path, f"not usable JSON ({_brief(e)})", row=row) from None
    # a value nested N deep needs N brackets: counting them is cheap, the walk is not
    if row is not None and _brackets(text) > MAX_DEPTH and _nested_too_deep(value):
        raise _too_deep(path, row)
    return value


def _brackets(text: str) -> int:
    return text.count("[") + text.count("{")


def _too_deep(path: Path, row: int | None, field: str | None = None) -> DataError:
    return DataError(path, f"nested too deeply for a dataset row (more than {MAX_DEPTH} "
                           "levels of lists or objects)", row=row, field=field)


def _nested_too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists/objects more than ``limit`` deep (level by level, not
    recursively: recursion is what such a value would break)."""
    level, depth = [value] if type(value) in (dict, list) else [], 1
    while level:
        if depth > limit:
            return True
        children = []
        for item in level:
            children += [v for v in (item.values() if type(item) is dict else item)
                         if type(v) in (dict, list)]
        level, depth = children, depth + 1
    return False


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            line = _text(path, raw, first_line=line_no)
            if not line.strip():
                continue
            try:
                row = _parse_json(path, line, row=line_no)
            except json.JSONDecodeError as e:
                raise DataError(path, f"not valid JSON ({e.msg} at column {e.colno}); fix "
                                      f"or delete line {line_no}",
                                row=line_no) from None
            if not isinstance(row, dict):
                raise DataError(path, f"line {line_no} holds a JSON {type(row).__name__}; "
                                      "expected an object with one row's columns",
                                row=line_no)
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict]:
    text = _text(path, path.read_bytes())
    try:
        data = _parse_json(path, text, row=None)
    except json.JSONDecodeError as e:
        # Many published ".json" files are really JSON Lines.
        if e.msg == "Extra data":
            return _read_jsonl(path)
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})",
                        row=e.lineno) from None
    if isinstance(data, dict):
        from alignment.data.formats import FORMATS

        # A lone row (its columns make a known format) is not a wrapper around rows:
        # without this, a ShareGPT row would be read as its list of turns.
        if any(set(data).issuperset(cols) for cols in FORMATS.values()):
            return [data]
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        key = next((k for k in ("train", "data", "rows", "examples", "instances", "records")
                    if k in lists), None)
        if key is None and len(data) == 1 and lists:
            key = next(iter(lists))
        if key is None:
            raise DataError(path, "a JSON object must hold the rows as a list under one key "
                                  f"(found list keys: {names(lists)}); "
                                  "write a JSON array or JSON Lines instead")
        data = lists[key]
    if not isinstance(data, list):
        raise DataError(path, f"holds a JSON {type(data).__name__}; expected an array of row "
                              "objects")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(path, f"item is a JSON {type(row).__name__}, expected an object",
                            row=i)
    if _brackets(text) > MAX_DEPTH and _nested_too_deep(data, MAX_DEPTH + 1):
        raise _too_deep(path, next(i for i, row in enumerate(data, start=1)
                                   if _nested_too_deep(row)))
    return data


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(path, f"cannot read as Parquet ({_brief(e)}); is the file complete?"
                        ) from None


def _brief(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _read_csv(path: Path, delimiter: str) -> list[dict]:
    # csv's default cell limit (128 KiB) refuses long prompts and answers, which are
    # ordinary; the limit is per process, so it is only ever raised
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    rows = []
    reader = csv.DictReader(io.StringIO(_text(path, path.read_bytes()), newline=""),
                            delimiter=delimiter)
    try:
        if not reader.fieldnames:
            raise DataError(path, "empty CSV: the first line must name the columns")
        for row_no, raw in enumerate(reader, start=1):
            if None in raw:
                raise DataError(path, "more cells than header columns; quote cells that "
                                      "contain the delimiter", row=row_no)
            rows.append({k: _csv_cell(path, row_no, k, v) for k, v in raw.items()})
    except csv.Error as e:
        raise DataError(path, f"not valid CSV ({e}) at line {reader.line_num}",
                        row=len(rows) + 1) from None
    return rows


def _csv_cell(path: Path, row: int, column: str, value: str | None) -> Any:
    if value is None:
        return None
    stripped = value.strip()
    if column in _STRUCTURED_COLUMNS and stripped[:1] in ("[", "{"):
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError:
            return value
        except RecursionError:
            raise _too_deep(path, row, column) from None
        if isinstance(decoded, (list, dict)):
            if _brackets(stripped) > MAX_DEPTH and _nested_too_deep(decoded):
                raise _too_deep(path, row, column)
            return decoded
    return value


def _read_folder(folder: Path, split: str | None) -> list[dict]:
    if (folder / "dataset_dict.json").exists():
        dd = _load_from_disk(folder)
        name = split or DEFAULT_SPLIT
        if name not in dd:
            raise DataError(folder, f"no split `{name}`; available: {', '.join(dd)}. "
                                    f"Pick one with `{folder}:SPLIT`")
        return _from_saved_folder(folder / name, lambda: dd[name].to_list())
    if (folder / "dataset_info.json").exists() and (folder / "state.json").exists():
        if split is not None:
            raise DataError(folder, f"this folder holds a single dataset, not a split "
                                    f"`{split}`; drop the `:{split}` suffix")
        dataset = _load_from_disk(folder)
        return _from_saved_folder(folder, dataset.to_list)
    shards = sorted(p for p in folder.rglob("*")
                    if p.is_file() and p.suffix.lower() in FILE_SUFFIXES
                    and p.name not in ("dataset_info.json", "state.json", "dataset_dict.json")
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not shards:
        raise DataError(folder, "found no data files (jsonl, json, parquet, csv) and no "
                                "`datasets` save_to_disk metadata in this folder")
    chosen = _shards_of_split(folder, shards, split)
    rows: list[dict] = []
    for shard in chosen:
        rows.extend(_read_file(shard))
    return rows


def _load_from_disk(folder: Path):
    import datasets

    # datasets reads the JSON metadata and maps the Arrow files lazily; a damaged folder
    # fails as JSON, Arrow, OS or key errors, none of which names the folder
    return _from_saved_folder(folder, lambda: datasets.load_from_disk(str(folder)))


def _from_saved_folder(folder: Path, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except DataError:
        raise
    except RecursionError:
        raise _too_deep(folder, None) from None
    except Exception as e:
        raise DataError(folder, f"cannot read this `datasets` save_to_disk folder "
                                f"({type(e).__name__}: {_brief(e)}); save it again") from None


def _shards_of_split(folder: Path, shards: list[Path], split: str | None) -> list[Path]:
    """Keep the shards named after the split (``train-0000.parquet``, ``train/x.jsonl``)."""

    def split_of(p: Path) -> str | None:
        for part in p.relative_to(folder).parts:
            head = part.split(".")[0].split("-")[0].split("_")[0].lower()
            if head in ("train", "test", "validation", "valid", "dev", "eval"):
                return head
        return None

    named = {split_of(p) for p in shards} - {None}
    if not named:
        if split is not None:
            raise DataError(folder, f"no shard is named after split `{split}`; drop the "
                                    f"`:{split}` suffix to read every file")
        return shards
    want = split or DEFAULT_SPLIT
    picked = [p for p in shards if split_of(p) == want]
    if not picked:
        raise DataError(folder, f"no shards for split `{want}`; found splits: "
                                f"{', '.join(sorted(named))}. Pick one with `{folder}:SPLIT`")
    return picked


# --------------------------------------------------------------------------- writing

def _atomic_file(path: Path, write: Callable[[Path], None]) -> Path:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private (0600)
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # full disk, read-only folder: the old file is intact
            raise WriteError(path, e) from e
        raise
    return path


def write_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write one file atomically: ``write(tmp)`` fills a temporary file beside ``path``
    (its name does not end in the target's suffix: tell a writer the format), which then
    replaces ``path``."""
    return _atomic_file(Path(path), write)


def _umask() -> int:
    """The process's umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_folder(path: Path, write: Callable[[Path], None]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's folder is private (0700)
    except OSError as e:
        raise WriteError(path, e) from e
    old = None
    try:
        write(tmp)
        if path.exists():
            # A non-empty folder cannot be replaced in one rename: move it aside first.
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)
        if isinstance(e, OSError):
            raise WriteError(path, e) from e
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def is_folder_target(path: Path) -> bool:
    """A path without a data-file suffix, or an existing folder, is a ``save_to_disk`` target."""
    return path.is_dir() or path.suffix.lower() not in FILE_SUFFIXES


def write_rows(rows: list[dict], path: str | Path) -> Path:
    """Write rows atomically: ``.jsonl``, ``.json``, ``.parquet``, or a folder (``save_to_disk``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() and any(path.iterdir()) and not any(
            (path / name).exists() for name in ("dataset_info.json", "dataset_dict.json")):
        # Replacing the folder would delete whatever the user keeps there.
        raise DataError(path, "exists and is not a dataset folder; write to a new folder or "
                              "to a file inside it (e.g. data.jsonl or data.parquet)")
    if is_folder_target(path):
        return _atomic_folder(path, lambda tmp: _save_to_disk(rows, tmp, path))
    if suffix in (".jsonl", ".ndjson"):
        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return _atomic_file(path, write)
    if suffix == ".json":
        return _atomic_file(path, lambda tmp: tmp.write_text(
            json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"))
    if suffix == ".parquet":
        table = _arrow_table(rows, path)
        import pyarrow.parquet as pq

        return _atomic_file(path, lambda tmp: pq.write_table(table, tmp))
    raise DataError(path, f"cannot write `{suffix}`; write .jsonl, .json, .parquet, or a "
                          "folder path (no suffix) for a `datasets` save_to_disk folder")


def _arrow_table(rows: list[dict], path: Path):
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(path, f"rows do not share one column type ({e}); every row must use "
                              "the same shape (e.g. all prompts text or all conversations), "
                              "or write .jsonl instead") from None


def _save_to_disk(rows: list[dict], tmp: Path, target: Path) -> None:
    import datasets

    table = _arrow_table(rows, target)
    # The progress bar would land in the middle of the command's own output.
    quiet = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        datasets.Dataset(table).save_to_disk(str(tmp))
    finally:
        if quiet:
            datasets.enable_progress_bars()


# --------------------------------------------------------------------------- cards

def card_path(path: str | Path) -> Path:
    """Where the card of a dataset at ``path`` lives: inside a folder, beside a file."""
    path = Path(path)
    if path.suffix.lower() == ".md":
        return path
    if is_folder_target(path):
        return path / "README.md"
    return path.with_name(f"{path.stem}.README.md")


def write_card(path: str | Path, title: str, info: dict) -> Path:
    """Write a dataset card for the dataset at ``path`` and return the card's path.

    ``info`` is free-form provenance (teacher, judge, templates, seeds, counts, parse
    failures...). It is rendered as markdown and also kept verbatim as JSON at the end
    of the card, so a later stage can read it back with :func:`read_card`.
    """
    target = card_path(path)
    header = ["---", f"pretty_name: {json.dumps(title)}", "tags:", "- align",
              f"created: {datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"]
    if isinstance(info.get("rows"), int):
        header.append(f"num_rows: {info['rows']}")
    header += ["---", "", f"# {title}", ""]
    body = []
    for key, value in info.items():
        body += [f"## {key}", "", _markdown(value), ""]
    raw = json.dumps(info, ensure_ascii=False, indent=2, default=str)
    body += ["## Machine-readable record", "", "```json", raw, "```", ""]
    text = "\n".join(header + body)
    return _atomic_file(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_card(path: str | Path) -> dict:
    """The ``info`` dict a card was written with (empty if the card has none)."""
    text = card_path(path).read_text(encoding="utf-8")
    marker = "## Machine-readable record\n\n```json\n"
    if marker not in text:
        return {}
    return json.loads(text.split(marker, 1)[1].rsplit("\n```", 1)[0])


def _markdown(value: Any, depth: int = 0) -> str:
    pad = "  " * depth
    if isinstance(value, dict):
        if not value:
            return f"{pad}- (none)"
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines += [f"{pad}- **{k}**:", _markdown(v, depth + 1)]
            else:
                lines.append(f"{pad}- **{k}**: {_inline(v)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return f"{pad}- (none)"
        return "\n".join(_markdown(v, depth + 1) if isinstance(v, (dict, list))
                         else f"{pad}- {_inline(v)}" for v in value)
    if isinstance(value, str) and "\n" in value:
        return f"{pad}```\n{value}\n{pad}```"
    return f"{pad}{_inline(value)}"


def _inline(value: Any) -> str:
    if isinstance(value, str):
        if "\n" in value:
            return "\n```\n" + value + "\n```"
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False, default=str)
