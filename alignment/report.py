"""Training curves and run summaries, rendered from the files a run leaves behind.

    align report RUN_DIR [--output curves.png]

Everything is read from ``trainer_state.json`` (the Trainer's log history) and
``metrics.json``, so a finished run can be re-rendered at any time, on any machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignment.errors import ConfigError

# (log key, panel title): each panel is drawn when the run logged that key; evaluation
# points (``eval_`` + key) go on the same panel as markers.
PANELS: tuple[tuple[str, str], ...] = (
    ("loss", "loss"),
    ("rewards/margins", "reward margin (chosen - rejected)"),
    ("rewards/accuracies", "preference accuracy"),
    ("mean_token_accuracy", "token accuracy"),
    ("accuracy", "accuracy"),
    ("reward", "mean reward (reward model)"),
    ("kl", "KL(policy || reference)"),
)


def log_history(run_dir: str | Path) -> list[dict]:
    """The Trainer's log entries; falls back to the newest checkpoint's copy."""
    run = Path(run_dir)
    candidates = [run / "trainer_state.json"] + sorted(
        run.glob("checkpoint-*/trainer_state.json"),
        key=lambda p: int(p.parent.name.split("-")[-1]), reverse=True)
    for path in candidates:
        if path.exists():
            return json.loads(path.read_text())["log_history"]
    raise ConfigError(f"{run}: no trainer_state.json here or in a checkpoint-*/ folder; "
                      "is this the --output_dir of a training run?")


def plot_training_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Write a PNG with one panel per logged figure against the global step."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    panels = [(key, name) for key, name in PANELS
              if any(key in e or f"eval_{key}" in e for e in history)][:3]
    if not panels:
        raise ConfigError("the log history has no loss or reward figures to plot; "
                          "did the run log at least once (--logging_steps)?")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, name) in zip(axes[0], panels):
        for prefix, style, label in (("", "-", "train"), ("eval_", "o--", "eval")):
            points = [(e["step"], e[prefix + key]) for e in history if prefix + key in e]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, style, label=label, markersize=4)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    run = Path(run_dir)
    return plot_training_curves(log_history(run), output or run / "training_curves.png",
                                title=run.name)


def summary(run_dir: str | Path) -> str:
    """A few lines: steps, time, first and last loss, final train/eval figures."""
    run = Path(run_dir)
    path = run / "metrics.json"
    if not path.exists():
        history = log_history(run)
        losses = [e["loss"] for e in history if "loss" in e]
        return (f"{run}: no metrics.json (run unfinished?); {len(losses)} logged losses"
                + (f", last {losses[-1]:.4f}" if losses else ""))
    m = json.loads(path.read_text())
    lines = [f"run: {run}",
             f"steps: {m.get('global_step')}  time: {m.get('train_runtime_s') or 0:.0f} s  "
             f"s/step: {m.get('seconds_per_step') or 0:.2f}  tokens/s: {m.get('tokens_per_s') or 0:.0f}",
             f"pairs: {m.get('train_pairs')} train, {m.get('eval_pairs')} eval"]
    first, last = m.get("train_loss_first"), m.get("train", {}).get("loss")
    if first is not None and last is not None:
        lines.append(f"train loss: {first:.4f} -> {last:.4f}")
    for split in ("train", "eval"):
        figures = m.get(split, {})
        shown = {k: v for k, v in figures.items()
                 if k.startswith("rewards/") or k in ("loss", "accuracy", "mean_token_accuracy")}
        if shown:
            lines.append(f"{split}: " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="align report", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="the --output_dir of a training run")
    parser.add_argument("--output", help="PNG path (default: RUN_DIR/training_curves.png)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if not Path(args.run_dir).is_dir():
        raise ConfigError(f"{args.run_dir}: no such run folder")
    png = render_run(args.run_dir, args.output)
    print(summary(args.run_dir))
    print(f"curves: {png}")
    return 0
