"""A run's figures: the last logged value of each, the totals, tokens per second, and
``metrics.json`` with the resolved configuration beside them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any


def track_totals(trainer):
    """Make the run's last logged figures its totals; return what :func:`final_metrics` needs.

    The Trainer logs every ``logging_steps``; a run whose length is not a multiple of it
    would end with figures (the cumulative ``num_tokens`` among them) a few steps short
    and a training curve that stops early, so the final optimizer step is logged too.
    The callback also notes the token count the trainer resumes from (see
    :func:`final_metrics`). Call it before ``trainer.train()``.
    """
    from transformers import TrainerCallback

    class RunTotals(TrainerCallback):
        tokens_at_start = 0

        def on_train_begin(self, args, state, control, **kwargs):
            # what a resumed run restored from its checkpoint (0 for a fresh run)
            self.tokens_at_start = state.num_input_tokens_seen or 0

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    totals = RunTotals()
    trainer.add_callback(totals)
    return totals


def final_metrics(log_history: list[dict], train_output, eval_metrics: dict | None,
                  totals=None) -> dict:
    """Last logged value of each training figure, the eval figures, and the run's totals.

    ``totals`` is what :func:`track_totals` returned; without it ``tokens_per_s`` assumes
    a fresh run whose final step was logged.
    """
    train: dict[str, float] = {}
    for entry in log_history:
        if "eval_loss" in entry or "train_runtime" in entry:
            continue
        train.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})
    train.pop("epoch", None)
    train.pop("step", None)
    out = {"train": train, "train_loss_mean": train_output.training_loss,
           "global_step": train_output.global_step,
           "train_runtime_s": train_output.metrics.get("train_runtime")}
    if eval_metrics:
        out["eval"] = {k.removeprefix("eval_"): v for k, v in eval_metrics.items()}
    out["train_loss_first"] = next((e["loss"] for e in log_history if "loss" in e), None)
    out["tokens_per_s"] = _tokens_per_second(
        log_history, out["train_runtime_s"], out["global_step"],
        totals.tokens_at_start if totals is not None else 0)
    runtime = out["train_runtime_s"]
    out["seconds_per_step"] = runtime / out["global_step"] if runtime and out["global_step"] else None
    return out


def _tokens_per_second(log_history: list[dict], runtime: float | None, final_step: int,
                       tokens_at_start: int) -> float | None:
    """Non-padding tokens trained on per second of this session's ``train()``.

    TRL keeps ``num_tokens`` as a running total over every micro-batch: the sum of the
    attention masks (chosen and rejected sequences both, for pairs), gathered over ranks;
    reference and evaluation passes are not counted. It is logged every
    ``logging_steps``; :func:`track_totals` makes the final step log too, so the last entry
    is the total. Most trainers start that total afresh in each session, as the runtime
    does; RLOO and GRPO keep it in the trainer state, which a resumed run restores, so the
    restored count (``tokens_at_start``) is taken off. None when the final step was not
    logged: a total from earlier steps over the whole runtime would understate the rate.
    """
    entries = [e for e in log_history if "num_tokens" in e and not any(
        k.startswith("eval_") for k in e)]
    if not entries or not runtime or entries[-1].get("step") != final_step:
        return None
    tokens = entries[-1]["num_tokens"]
    if tokens_at_start and tokens > tokens_at_start:
        tokens -= tokens_at_start
    return tokens / runtime if tokens > 0 else None


def write_metrics(output_dir: str | Path, metrics: dict, config: dict) -> Path:
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps({**metrics, "config": config}, indent=2, default=_jsonable))
    return path


def resolved_config(*objs) -> dict:
    """Every parsed dataclass as plain JSON-able values, keyed by class name."""
    out = {}
    for obj in objs:
        values = obj.to_dict() if hasattr(obj, "to_dict") else asdict(obj)
        out[type(obj).__name__] = json.loads(json.dumps(values, default=_jsonable))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)
