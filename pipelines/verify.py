"""Verifier scores: every response of ranked rows checked by programmatic verifiers.

    ranked rows (+ each row's ``verifiers``) ──► alignment.verifiers ──► ranked rows + card

A judge without a model: each response's score is what the verifiers of its row give
it (see ``alignment/verifiers.py`` for the checks and the spec format). A row's specs
come from its own ``verifiers`` column, e.g. ``[{"name": "max_words", "params":
{"limit": 40}}]``; ``--verifier SPEC`` (repeatable, ``NAME:key=value,...`` or
``package.module:function``) adds checks to every row, and with
``--only-cli-verifiers`` replaces the rows' own. A row left with no check at all is an
error naming the file and row, never skipped. The score of a response is the mean of
its checks' scores (partial credit included), or with ``--no-partial`` 1.0 when every
check passes and 0.0 otherwise.

Output: the ranked rows with ``scores`` (the verifier scores), ``ranks``, ``judge``
``"verifiers"``, ``verifiers`` (the specs applied), ``verifier_results`` (per response,
the score of each check keyed by name, ``name#2`` for a repeated name) and
``judge_raw`` (the same as JSON, with the combined score and whether all passed). The
card counts rows and responses and gives each check's pass rate. To mix these scores
with an AI judge's, use ``align generate combine --normalize minmax --weights ...``.

Run it as ``align generate verify IN -o OUT [--verifier SPEC ...]`` or
``python -m pipelines.verify --help``.
"""

from __future__ import annotations

import argparse
import json
import sys

from alignment import verifiers
from alignment.errors import ConfigError, DataError


def read_rows_with_specs(path: str, limit: int | None = None) -> tuple[list[dict], list]:
    """The ranked rows of ``path`` and each row's raw ``verifiers`` value (None if absent).

    The data layer's ranked schema has no ``verifiers`` field, so the column is read from
    the source rows beside the converted ones, which line up one to one for every format
    except HelpSteer (rows grouped by prompt)."""
    from alignment.data import convert, detect_format, read_rows

    raw = read_rows(path)
    fmt = detect_format(raw, path)
    rows = convert(raw, "ranked", path=path, fmt=fmt)
    if fmt != "helpsteer" and len(rows) == len(raw):
        carried = [r.get("verifiers") for r in raw]
    elif any(r.get("verifiers") is not None for r in raw):
        raise DataError(path, f"`{fmt}` rows are grouped or dropped on their way to ranked "
                              "rows, so their `verifiers` cannot follow them; write the "
                              "specs into align ranked rows (prompt, responses, scores)",
                        field="verifiers")
    else:
        carried = [None] * len(rows)
    return (rows[:limit], carried[:limit]) if limit else (rows, carried)


def row_specs(carried: list, path: str, extra: list[dict], only_extra: bool) -> list[list[dict]]:
    """Each row's checked specs: its own (unless ``only_extra``) followed by ``extra``."""
    out = []
    for i, own in enumerate(carried, start=1):
        if own is None or only_extra:
            own = []
        if not isinstance(own, list):
            raise DataError(path, 'expected a list of specs ({"name": ..., "params": {...}}), '
                                  f"got {type(own).__name__}", row=i, field="verifiers")
        specs = [verifiers.check_spec(s, f"verifiers[{j}]", path=path, row=i)
                 for j, s in enumerate(own)] + extra
        if not specs:
            raise DataError(path, "has no verifiers to check; add a `verifiers` list to the "
                                  "row or pass --verifier SPEC for every row",
                            row=i, field="verifiers")
        out.append(specs)
    return out


def verify(rows: list[dict], specs: list[list[dict]], partial: bool = True
           ) -> tuple[list[dict], dict]:
    """Score every response of ``rows`` with its row's ``specs``: (rows, card info)."""
    from pipelines.verdicts import ranks_from_scores

    out, checks = [], {}
    passing = 0
    for row, mine in zip(rows, specs, strict=True):
        verdicts = [verifiers.score(mine, r, partial) for r in row["responses"]]
        scores = [v["score"] for v in verdicts]
        passing += sum(v["passed"] for v in verdicts)
        for key, spec in zip(verifiers.result_keys(mine), mine):
            tally = checks.setdefault(verifiers.format_spec(spec),
                                      {"responses": 0, "passed": 0, "total": 0.0})
            for v in verdicts:
                tally["responses"] += 1
                tally["passed"] += v["results"][key] == 1.0
                tally["total"] += v["results"][key]
        keep = {k: row[k] for k in ("id", "prompt", "responses", "models", "source",
                                    "finish_reasons", "truncated") if k in row}
        out.append({**keep, "verifiers": [verifiers.stored(s) for s in mine], "scores": scores,
                    "ranks": ranks_from_scores(scores), "judge": "verifiers",
                    "judge_raw": [json.dumps(v, ensure_ascii=False) for v in verdicts],
                    "verifier_results": [v["results"] for v in verdicts]})
    n = sum(len(r["responses"]) for r in out)
    info = {
        "judge": {"name": "verifiers", "partial": partial,
                  "score": "mean of the checks' scores" if partial
                  else "1.0 when every check passes, else 0.0"},
        "counts": {"rows": len(out), "responses": n, "responses_passing_all": passing},
        "checks": {label: {"responses": t["responses"], "passed": t["passed"],
                           "pass_rate": round(t["passed"] / t["responses"], 4),
                           "mean_score": round(t["total"] / t["responses"], 4)}
                   for label, t in checks.items()},
        "descriptions": {s["name"]: verifiers.get(s["name"]).description
                         for mine in specs for s in mine},
    }
    return out, info


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="align generate verify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="ranked dataset to check")
    ap.add_argument("--output", "-o", required=True, help="ranked dataset to write")
    ap.add_argument("--verifier", action="append", default=[], metavar="SPEC",
                    help="a check for every row: NAME, NAME:key=value,... or "
                         "package.module:function[:key=value,...]; repeatable")
    ap.add_argument("--only-cli-verifiers", action="store_true",
                    help="ignore the rows' own `verifiers` and apply only --verifier")
    ap.add_argument("--partial", action=argparse.BooleanOptionalAction, default=True,
                    help="score = mean of the checks with partial credit (default); "
                         "--no-partial: 1 when all pass, else 0")
    ap.add_argument("--limit", type=int, default=None, help="check only the first N rows")
    return ap


def main(argv: list[str] | None = None) -> int:
    from pipelines.judging import write_output

    args = parser().parse_args(argv)
    if args.only_cli_verifiers and not args.verifier:
        raise ConfigError("--only-cli-verifiers needs at least one --verifier SPEC")
    extra = [verifiers.parse_spec(text) for text in args.verifier]
    rows, carried = read_rows_with_specs(args.input, args.limit)
    out, info = verify(rows, row_specs(carried, args.input, extra, args.only_cli_verifiers),
                       args.partial)
    info = {**info, "input": args.input, "command_line_verifiers": args.verifier,
            "only_command_line_verifiers": args.only_cli_verifiers}
    path = write_output(out, args.output, "align verifier scores", info)
    c = info["counts"]
    print(f"wrote {c['rows']} rows ({c['responses']} responses checked) to {path}; "
          f"{c['responses_passing_all']} responses pass every check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
