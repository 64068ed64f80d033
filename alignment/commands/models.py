"""`align models`: prepare and list the bundled offline models."""

from __future__ import annotations

import argparse

from alignment.errors import AlignError
from alignment.models import BUNDLED, ModelNotAvailable, model_status, prepare_model


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="align models", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("prepare", help="dequantise a bundled GGUF into the local cache")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"bundled models to prepare: {', '.join(BUNDLED)} (default: smollm2)")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    sub.add_parser("list", help="show bundled models and whether they are ready")
    args = parser.parse_args(argv)
    if args.action == "list":
        for row in model_status():
            state = "ready" if row["prepared"] else ("installed" if row["installed"] else "missing")
            print(f"{row['name']:<11} {state:<9} {row['path']}\n            {row['description']}")
        return 0
    for name in args.names or ["smollm2"]:
        try:
            path = prepare_model(name, force=args.force)
        except ModelNotAvailable as e:
            raise AlignError(str(e)) from e
        print(f"{name}: {path}")
    return 0
