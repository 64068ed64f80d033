"""Human annotation round trip on a local Argilla: serve, push ranked rows, two
annotators rank them (over the REST API, as the web UI would), pull pairs.

    python examples/annotate_roundtrip.py [RANKED.jsonl] [--keep]

Without a file it ranks three built-in rows. The server runs in a temporary home
and is stopped at the end unless --keep is given (then open the printed URL and
sign in with the credentials file it names).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotation import pull as pl  # noqa: E402
from annotation import server as srv  # noqa: E402
from annotation.client import ArgillaClient, resolve_connection  # noqa: E402
from annotation.push import push, read_ranked  # noqa: E402
from annotation.report import write_report  # noqa: E402
from annotation.users import UserSpec  # noqa: E402

ROWS = [
    {"id": "ex-1", "prompt": "What is the boiling point of water at sea level?",
     "responses": ["100 °C (212 °F).", "About 90 degrees.", "Water does not boil."],
     "models": ["a", "b", "c"], "scores": [9.0, 4.0, 1.0], "judge": "example-judge",
     "judge_raw": ["9", "4", "1"]},
    {"id": "ex-2", "prompt": "Give one tip for better sleep.",
     "responses": ["Keep a regular bedtime.", "Drink coffee at night.", "Sleep is overrated."],
     "models": ["a", "b", "c"], "scores": [8.0, 2.0, 3.0], "judge": "example-judge",
     "judge_raw": ["8", "2", "3"]},
    {"id": "ex-3", "prompt": "Translate 'thank you' into French.",
     "responses": ["Merci.", "Gracias.", "Danke."],
     "models": ["a", "b", "c"], "scores": [9.0, 3.0, 3.0], "judge": "example-judge",
     "judge_raw": ["9", "3", "3"]},
]
# what each annotator answers: rank per response, 1 = best
ANSWERS = {"alice": [1, 2, 3], "bob": [1, 3, 2]}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("ranked", nargs="?")
    p.add_argument("--keep", action="store_true", help="leave the server running")
    args = p.parse_args()
    rows = read_ranked(args.ranked) if args.ranked else ROWS
    home = srv.ServerHome(Path(tempfile.mkdtemp(prefix="align-argilla-example-")))
    info = srv.start(home, port=srv.free_port())
    print(f"Argilla at {info['url']} (started in {info['startup_s']} s); owner credentials "
          f"in {home.credentials_file}")
    try:
        users = [UserSpec(name, "annotator", f"{name}-example-pw") for name in ANSWERS]
        with ArgillaClient(resolve_connection(home=home.root)) as owner:
            result = push(owner, rows, "example", users=users)
            print(f"pushed {result.pushed} records: {result.dataset_url}")
            n = len(rows[0]["responses"])
            for user in users:
                with ArgillaClient.for_user(info["url"], user.username, user.password) as me:
                    for record in owner.records(result.dataset_id):
                        ranks = ANSWERS[user.username][:n]
                        me.respond(record["id"], {
                            "ranking": {"value": [{"value": f"response_{i + 1}", "rank": r}
                                                  for i, r in enumerate(ranks)]},
                            "best_quality": {"value": 4}})
            dataset, records, _ = pl.fetch(owner, "example")
        pl.aggregate(records)
        stats = pl.summary(records)
        pairs = pl.to_pairs(records)
        out = pl.write_pairs(pairs, home.root / "pairs.jsonl")
        md = write_report(home.root / "report", dataset, records, stats, out, len(pairs))
        print(f"{len(pairs)} pairs in {out}; report {md}")
        print(f"Kendall's W {stats['kendall_w_mean']:.3f}, Krippendorff's alpha "
              f"{stats['krippendorff_alpha_ordinal']:.3f}, tau vs judge "
              f"{stats['tau_human_vs_judge_mean']:.3f}")
    finally:
        if not args.keep:
            srv.stop(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
