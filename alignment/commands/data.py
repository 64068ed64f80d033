"""`align data`: inspect, convert and pair datasets.

  align data inspect IN
  align data convert IN --to sft|preference|kto|ranked OUT [--from FMT] [--strategy S]
                     [--margin M] [--seed N] [--dedup] [--min-chars N] [--max-chars N]
  align data pairs IN OUT [--strategy best-worst|best-random|all] [--margin M] [--seed N]
                   [--keep-truncated]

IN is a .jsonl, .json, .parquet or .csv file, a `datasets` save_to_disk folder, or a
folder of shards; PATH:SPLIT picks a split (default: train). OUT is written atomically
(.jsonl, .json, .parquet, or a folder path for save_to_disk) with a dataset card
beside it (OUT-stem.README.md, or README.md inside a folder) recording the source,
format, options and counts. The source format is detected from the column names,
checked in the order below; pass --from to name it. Ranked responses cut off by the
token limit (`truncated`, or finish reason `length`) are not paired unless
--keep-truncated; the card counts them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignment.data import (FORMATS, STRATEGIES, TARGETS, convert, dedup, detect_format,
                            prompt_length_filter, ranked_to_pairs, read_rows, stats, write_card,
                            write_rows)
from alignment.data.formats import FAMILY, formats_table, normalise
from alignment.errors import DataError

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="formats (required columns -> schema):\n"
                                            + formats_table())
    sub = parser.add_subparsers(dest="action", required=True)

    p = sub.add_parser("inspect", help="detected format, row count, columns, a sample, lengths")
    p.add_argument("input", metavar="IN")

    p = sub.add_parser("convert", help="convert any known format to an align schema")
    p.add_argument("input", metavar="IN")
    p.add_argument("--to", required=True, choices=TARGETS, help="target schema")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--from", dest="fmt", choices=list(FORMATS),
                   help="source format (default: detected from the columns)")
    _pairing_options(p)
    p.add_argument("--dedup", action="store_true",
                   help="drop rows whose prompt repeats an earlier one (case, punctuation "
                        "and whitespace ignored)")
    p.add_argument("--min-chars", type=int, default=0, help="drop prompts shorter than this")
    p.add_argument("--max-chars", type=int, default=None, help="drop prompts longer than this")

    p = sub.add_parser("pairs", help="ranked responses -> preference pairs")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    _pairing_options(p)
    return parser


def _pairing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", choices=STRATEGIES, default="best-worst",
                   help="how rankings become pairs (default: best-worst)")
    p.add_argument("--margin", type=float, default=0.0,
                   help="keep a pair only if score(chosen) - score(rejected) >= this")
    p.add_argument("--seed", type=int, default=0, help="seed for best-random")
    p.add_argument("--keep-truncated", action="store_true",
                   help="pair responses the token limit cut off too (default: skip them)")


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.action == "inspect":
        return _inspect(args.input)
    if args.margin < 0:
        parser.error("--margin must be >= 0")
    if args.action == "pairs":
        rows = read_rows(args.input)
        fmt = detect_format(rows, args.input)
        if FAMILY[fmt] != "ranked":
            raise DataError(args.input, f"`align data pairs` needs ranked rows (several scored "
                                        f"responses per prompt), but this is `{fmt}`; use "
                                        f"`align data convert --to preference` instead")
        return _convert(args.input, args.output, "preference", fmt, args, rows)
    return _convert(args.input, args.output, args.to, args.fmt, args)


def _inspect(path: str) -> int:
    rows = read_rows(path)
    fmt = detect_format(rows, path)
    # every row is checked as conversion and training would check it, so a dataset that
    # inspects cleanly converts cleanly, and a bad row is named here, not later
    normalise(rows, fmt, path)
    info = stats(rows)
    print(f"{path}\n  format:  {fmt} (converts via the `{FAMILY[fmt]}` schema)")
    print(f"  rows:    {info['rows']}\n  columns: {', '.join(info['columns'])}")
    print("  lengths (characters):")
    width = max(map(len, info["lengths"]), default=0)
    for col, s in info["lengths"].items():
        print(f"    {col:<{width}}  min {s['min']}  mean {s['mean']}  median {s['median']}"
              f"  max {s['max']}")
    sample = json.dumps(rows[0], ensure_ascii=False, indent=2, default=str)
    if len(sample) > 2000:
        sample = sample[:2000] + "\n  ..."
    print(f"  first row:\n{sample}")
    return 0


def _convert(src: str, dst: str, to: str, fmt: str | None, args: argparse.Namespace,
             rows: list[dict] | None = None) -> int:
    rows = read_rows(src) if rows is None else rows
    counts: dict = {"input_rows": len(rows)}
    source_format = fmt or detect_format(rows, src)
    if FAMILY[source_format] == "ranked" and to in ("preference", "kto"):
        out = _ranked_to(to, rows, src, source_format, args, counts)
    else:
        out = convert(rows, to, path=src, fmt=source_format, strategy=args.strategy,
                      margin=args.margin, seed=args.seed, stats=counts)
    if getattr(args, "dedup", False):
        out, counts["duplicates_removed"] = dedup(out)
    if getattr(args, "min_chars", 0) or getattr(args, "max_chars", None) is not None:
        out, counts["length_filtered"] = prompt_length_filter(
            out, min_chars=args.min_chars, max_chars=args.max_chars)
    counts.pop("source_format", None)
    counts["output_rows"] = len(out)
    if not out:
        raise DataError(src, f"no rows left to write ({counts}); nothing written to {dst}")
    path = write_rows(out, dst)
    options = {"to": to}
    if FAMILY[source_format] == "ranked" and to in ("preference", "kto"):
        options.update(strategy=args.strategy, margin=args.margin, seed=args.seed,
                       keep_truncated=args.keep_truncated)
    card = write_card(path, f"{Path(dst).name} ({to})", {
        "source": str(src), "source_format": source_format, "conversion": options,
        "counts": counts, "rows": len(out),
    })
    print(f"{src} ({source_format}) -> {path} ({to}): {len(out)} rows; card {card}")
    print("  " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def _ranked_to(to: str, rows: list[dict], src: str, fmt: str, args: argparse.Namespace,
               counts: dict) -> list[dict]:
    """Ranked rows -> preference pairs (or KTO rows), truncated responses left out
    unless --keep-truncated."""
    ranked = convert(rows, "ranked", path=src, fmt=fmt, stats=counts)
    pairs, pair_counts = ranked_to_pairs(ranked, args.strategy, margin=args.margin,
                                         seed=args.seed, keep_truncated=args.keep_truncated)
    counts.update({f"pairs_{k}": v for k, v in pair_counts.items()})
    if to == "kto":
        return convert(pairs, "kto", path=src, fmt="align-preference")
    return pairs
