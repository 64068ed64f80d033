"""Errors a user can act on. The CLI prints them without a traceback and exits non-zero."""

from __future__ import annotations


class AlignError(Exception):
    """Base class: the message says what is wrong and how to fix it."""

    exit_code = 2


class DataError(AlignError):
    """Bad input data, located by file, row (1-based line or row number) and field."""

    def __init__(self, path: object, message: str, row: int | None = None,
                 field: str | None = None):
        self.path, self.row, self.field, self.reason = str(path), row, field, message
        where = self.path
        if row is not None:
            where += f" row {row}"
        if field is not None:
            where += f": field `{field}`"
        super().__init__(f"{where}: {message}")


class ConfigError(AlignError):
    """Incompatible or unknown options, found before any model loads."""


class WriteError(AlignError):
    """An output that could not be written (full disk, read-only folder, no permission).

    Writes are atomic, so whatever was at the target before is still there, unchanged."""

    def __init__(self, path: object, error: OSError):
        self.path, self.reason = str(path), error.strerror or str(error)
        super().__init__(f"{self.path}: could not write it ({self.reason}); nothing was "
                         "replaced, any earlier version is unchanged")
