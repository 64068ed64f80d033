"""`align annotate`: a local Argilla server, push ranked data, pull human rankings.

    align annotate serve [--port 6900] [--host 127.0.0.1] [--workers N] [--home DIR] [--detach|--foreground] [--demo]
    align annotate status | stop | reindex
    align annotate push RANKED --dataset-name NAME [--workspace W] [--users users.yaml]
                        [--min-submitted 2] [--update]
    align annotate pull --dataset-name NAME --output PAIRS.jsonl [--report DIR]
    align annotate calibrate --input DIR/records.jsonl [--judges [NAME=]RANKED ...]
                             [--output calibration.json] [--plot calibration.png]

push/pull talk to the local server by default, or to any Argilla 2.x given by
``--url`` / ``ARGILLA_API_URL`` with ``ARGILLA_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alignment.data import STRATEGIES
from annotation import server as srv

EPILOG = """\
credentials: the local server's owner comes from ALIGN_ARGILLA_USERNAME,
ALIGN_ARGILLA_PASSWORD and ALIGN_ARGILLA_API_KEY when all three are set, else from
HOME/credentials.json (mode 0600), which `serve` fills with random secrets the
first time. Secrets are never printed. A real deployment: set ARGILLA_API_URL
and ARGILLA_API_KEY (or pass --url) and push/pull use it; serve is not needed.
"""


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="an existing Argilla server (default: ARGILLA_API_URL, else "
                                 "the local one); its key comes from ARGILLA_API_KEY")
    p.add_argument("--home", help="home of the local server (default: ALIGN_HOME/argilla)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align annotate", description=__doc__.split("\n")[0],
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the local Argilla server (UI, SQLite, Redis, worker)")
    p.add_argument("--port", type=int, default=srv.DEFAULT_PORT)
    p.add_argument("--home", help="data folder (default: ALIGN_HOME/argilla)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--detach", dest="detach", action="store_true", default=True,
                      help="return once healthy; the server keeps running (default)")
    mode.add_argument("--foreground", dest="detach", action="store_false",
                      help="stay attached; Ctrl-C stops the server")
    p.add_argument("--demo", action="store_true",
                   help="owner argilla / 12345678 / key argilla.apikey: FOR DEMOS ONLY")
    p.add_argument("--host", default=srv.LOOPBACK,
                   help="address the web server binds (default 127.0.0.1: this machine "
                        "only; 0.0.0.0 opens it to the network, with a warning)")
    p.add_argument("--workers", type=int, default=None,
                   help="web server processes (default: ALIGN_ARGILLA_WEB_WORKERS, else 2 "
                        "on two or more cores: a push checks records at one core per "
                        "process)")

    for name, help_ in (("stop", "stop the local server"),
                        ("status", "is the local server running, and where"),
                        ("reindex", "rebuild the search index from Argilla's database")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--home", help="data folder (default: ALIGN_HOME/argilla)")
        if name == "reindex":
            p.add_argument("--dataset-id", help="only this dataset (default: all)")

    p = sub.add_parser("push", help="create/extend an Argilla dataset from ranked rows")
    p.add_argument("ranked", help="ranked dataset (align ranked schema, JSONL/Parquet/folder)")
    p.add_argument("--dataset-name", required=True)
    p.add_argument("--workspace", help="workspace (default: the users file's, else 'align')")
    p.add_argument("--users", help="YAML/JSON file of annotators (see annotation/users.py)")
    p.add_argument("--min-submitted", type=int, default=2,
                   help="submitted responses a record needs to count as complete")
    p.add_argument("--update", action="store_true",
                   help="re-send rows already in the dataset (default: skip them)")
    p.add_argument("--batch-size", type=int, default=200)
    _connection_args(p)

    p = sub.add_parser("pull", help="aggregate human rankings into preference pairs")
    p.add_argument("--dataset-name", required=True)
    p.add_argument("--workspace")
    p.add_argument("--output", required=True, help="pairs file (TRL prompt/chosen/rejected)")
    p.add_argument("--report", help="folder for README.md, agreement.png, records.jsonl")
    p.add_argument("--pairs", choices=STRATEGIES, default="best-worst",
                   help="as `align data pairs`: best vs worst per record, best vs a random "
                        "lower one, or every pair with different points")
    p.add_argument("--min-annotators", type=int, default=1,
                   help="records with fewer submitted rankings give no pairs")
    _connection_args(p)

    p = sub.add_parser("calibrate", help="how well each AI judge agrees with the annotators: "
                                         "Kendall tau, top-1 agreement, reliability curve")
    p.add_argument("--input", required=True,
                   help="records.jsonl of `pull --report DIR` (annotators' rankings per record)")
    p.add_argument("--judges", nargs="+", default=[], metavar="[NAME=]RANKED",
                   help="more judges: ranked files scoring the same records (matched by id)")
    p.add_argument("--output", help="figures as JSON (default: calibration.json beside --input)")
    p.add_argument("--plot", help="reliability plot PNG (default: --output with .png)")
    p.add_argument("--bins", type=int, default=5, help="bins of the judge's score margin")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    return parser


def _home(args) -> srv.ServerHome:
    return srv.ServerHome(Path(args.home) if args.home else srv.default_home())


def _serve(args) -> int:
    home = _home(args)
    if args.demo:
        print("WARNING: --demo uses the well-known owner password '12345678' and API key "
              "'argilla.apikey'. Anyone who can reach this port can sign in. DEMOS ONLY.")
    warning = srv.check_host(args.host, args.demo)
    if warning:
        print(warning.format(port=args.port), file=sys.stderr)
    info = srv.start(home, port=args.port, demo=args.demo, detach=args.detach, host=args.host,
                     workers=args.workers)
    if info.get("already_running"):
        print(f"Argilla is already running at {info['url']} (home {home.root})")
    else:
        print(f"Argilla is running at {info['url']} (started in {info['startup_s']} s)")
        if info.get("recovered") is not None:
            print("  the last run did not shut down cleanly: the search index was rebuilt "
                  "from the database" + (f" ({info['recovered']})" if info["recovered"]
                                         else ""))
    state = home.state() or {}
    print(f"  home: {home.root}")
    print(f"  owner credentials: {state.get('credentials')}")
    print("  stop with: align annotate stop" + (f" --home {home.root}" if args.home else ""))
    if not args.detach:
        print("  (foreground: Ctrl-C stops it)")
        srv.wait_foreground(home)
    return 0


def _push(args) -> int:
    from annotation.client import ArgillaClient, resolve_connection
    from annotation.push import DEFAULT_WORKSPACE, push_file
    from annotation.users import load_users

    file_ws, users = load_users(args.users) if args.users else (None, [])
    workspace = args.workspace or file_ws or DEFAULT_WORKSPACE
    with ArgillaClient(resolve_connection(args.url, args.home)) as client:
        def progress(done: int, total: int) -> None:
            print(f"  pushed {done}/{total}", flush=True)

        r = push_file(client, args.ranked, args.dataset_name, workspace=workspace, users=users,
                      min_submitted=args.min_submitted, update=args.update,
                      batch_size=args.batch_size, on_batch=progress)
    print(f"{'created' if r.created else 'updated'} dataset {args.dataset_name!r} in workspace "
          f"{workspace!r}: {r.pushed} records pushed, {r.skipped} already there")
    for name, what in r.users.items():
        print(f"  user {name}: {what}, member of {workspace!r}")
    print(f"  annotate at {r.dataset_url}")
    return 0


def _pull(args) -> int:
    from annotation import pull
    from annotation.client import ArgillaClient, resolve_connection

    with ArgillaClient(resolve_connection(args.url, args.home)) as client:
        ds, records, _ = pull.fetch(client, args.dataset_name, args.workspace)
    pull.aggregate(records)
    stats = pull.summary(records)
    pairs = pull.to_pairs(records, args.pairs, args.min_annotators)
    out = pull.write_pairs(pairs, args.output) if pairs else None
    if out is None:
        print(f"no submitted rankings in {args.dataset_name!r} yet: no pairs written")
    else:
        print(f"wrote {len(pairs)} pairs to {out}")
    if args.report:
        from annotation.report import write_report

        md = write_report(args.report, ds, records, stats, out, len(pairs))
        print(f"report: {md}")
    print(json.dumps({k: v for k, v in stats.items() if k != "annotators"}, indent=2))
    return 0 if pairs else 1


def _calibrate(args) -> int:
    from alignment.errors import ConfigError
    from annotation import calibration

    if args.bins < 1 or args.resamples < 1:
        raise ConfigError("--bins and --resamples must be at least 1")
    result, json_path, png = calibration.run(args.input, args.judges, args.output, args.plot,
                                             args.bins, args.seed, args.resamples)
    print(calibration.format_table(result))
    print(f"figures: {json_path}\nplot: {png}")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "stop":
        stopped = srv.stop(_home(args))
        print(f"stopped: {', '.join(stopped)}" if stopped else "no local server was running")
        return 0
    if args.command == "status":
        info = srv.status(_home(args))
        running = [n for n, pid in info["pids"].items() if pid]
        print(f"home: {info['home']}\nurl: {info['url'] or '-'}\n"
              f"running: {', '.join(running) or 'nothing'}\nhealthy: {info['healthy']}")
        return 0 if info["healthy"] else 1
    if args.command == "reindex":
        print(srv.reindex(_home(args), args.dataset_id), end="")
        return 0
    if args.command == "push":
        return _push(args)
    if args.command == "calibrate":
        return _calibrate(args)
    return _pull(args)
