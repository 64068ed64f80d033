"""Literal command tables, and the one dispatcher both ``align`` and ``align generate`` use.

A table maps a name to the module that runs it; the module is imported only when its
command runs, so ``--help`` is instant, and a test can walk every entry. Each module
exposes ``main(argv: list[str]) -> int``. No registry and no plugin discovery: adding a
command is one line in its table.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """``module``'s ``main`` runs it; ``first`` goes before the user's arguments (one module
    serving several commands learns which from it); ``help`` is its line in the usage."""

    module: str
    help: str
    first: tuple[str, ...] = ()


def usage(prog: str, noun: str, table: Mapping[str, Command]) -> str:
    width = max(map(len, table))
    lines = [f"usage: {prog} <{noun}> [options]", "", f"{noun}s:"]
    lines += [f"  {name:<{width}}  {entry.help}" for name, entry in table.items()]
    lines += ["", f"Run `{prog} <{noun}> --help` for a {noun}'s options."]
    return "\n".join(lines)


def dispatch(prog: str, noun: str, table: Mapping[str, Command], argv: Sequence[str],
             before: Callable[[str, list[str]], None] | None = None) -> int:
    """Run ``argv[0]``'s entry with the rest of ``argv``: 0 after printing the usage for
    no name or ``--help``, 2 (and the usage, on stderr) for a name not in ``table``.
    ``before(name, rest)`` runs once the name is known, before the module is imported."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(prog, noun, table))
        return 0
    name, rest = argv[0], list(argv[1:])
    if name not in table:
        print(f"{prog}: unknown {noun} '{name}'\n\n{usage(prog, noun, table)}", file=sys.stderr)
        return 2
    if before is not None:
        before(name, rest)
    entry = table[name]
    return int(importlib.import_module(entry.module).main([*entry.first, *rest]) or 0)
