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
