"""A write that cannot complete (full disk, read-only folder) leaves the old output intact
and says why, with exit code 2 and no traceback."""

from __future__ import annotations

import errno
import io
import json
import os

import pytest

from alignment.cli import main as align
from alignment.data import read_rows, write_rows
from alignment.errors import WriteError

OLD = [{"prompt": "p", "chosen": "a", "rejected": "b"}]
NEW = [{"prompt": "q", "chosen": "c", "rejected": "d"}] * 50


def full_disk(monkeypatch, after_bytes: int = 64):
    """Writes in this process fail with ENOSPC once ``after_bytes`` went to temp files."""
    written = {"n": 0}
    import builtins

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            written["n"] += len(data)
            if written["n"] > after_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Full(f) if "w" in mode and str(file).endswith(".tmp") else f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # what Path.write_text opens with


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_full_disk_leaves_the_previous_file_intact(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"pairs{suffix}"
    write_rows(OLD, target)
    before = target.read_bytes()
    full_disk(monkeypatch)
    with pytest.raises(WriteError, match="No space left on device") as err:
        write_rows(NEW, target)
    assert str(target) in str(err.value) and err.value.exit_code == 2
    monkeypatch.undo()
    assert target.read_bytes() == before and read_rows(target) == OLD
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp file left


def test_a_read_only_folder_is_a_clear_error(tmp_path, monkeypatch):
    target = tmp_path / "out" / "rows.jsonl"
    write_rows(OLD, target)

    def refuse(*args, **kwargs):  # what mkstemp meets in a read-only folder (even as root)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    import tempfile

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match="Read-only file system"):
        write_rows(NEW, target)
    monkeypatch.undo()
    assert read_rows(target) == OLD


def test_a_saved_dataset_folder_survives_a_failed_rewrite(tmp_path, monkeypatch):
    target = tmp_path / "ds"
    write_rows(OLD, target)
    import alignment.data.io as data_io

    def fail(rows, tmp, path):
        (tmp / "partial").write_text("x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(data_io, "_save_to_disk", fail)
    with pytest.raises(WriteError):
        write_rows(NEW, target)
    monkeypatch.undo()
    assert read_rows(target) == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_the_cli_exits_2_without_a_traceback(tmp_path, monkeypatch, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in NEW))
    out = tmp_path / "out.jsonl"
    write_rows(OLD, out)
    full_disk(monkeypatch)
    rc = align(["data", "convert", "--to", "preference", str(src), str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "out.jsonl" in err and "No space left on device" in err
    assert read_rows(out) == OLD
