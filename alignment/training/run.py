"""The end of every run: train, save, write the run's files, say where they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignment.data.training_sets import save_pairs
from alignment.training.card import write_model_card
from alignment.training.metrics import final_metrics, resolved_config, track_totals, write_metrics


def writes_outputs(trainer) -> bool:
    """Whether this process writes the run's files (tokenizer, metrics, card, plots).

    Call it after ``trainer.save_model()`` and ``trainer.save_state()``, which every rank
    must reach (they write once, from the main process, themselves). Under
    ``accelerate launch`` the other ranks then stop: were they to go on, they would write
    the same files at the same time, and read ``trainer_state.json`` before it exists.
    """
    return trainer.is_world_process_zero()


@dataclass
class Run:
    """A finished ``trainer.train()``, as the process that writes the run's files sees it."""

    trainer: Any
    result: Any  # transformers' TrainOutput
    eval_metrics: dict | None
    totals: Any  # what track_totals returned
    out: Path

    @property
    def steps(self) -> int:
        return self.result.global_step


def train_and_save(trainer, resume: str | bool | None, *, evaluate: bool, tokenizer=None,
                   save_model: bool | str | Path = True) -> Run | None:
    """Train (from checkpoint ``resume``, if any), evaluate once more if asked, and save.

    ``save_model`` is where the trained weights go: True for the output dir, a path for
    somewhere else, False when the recipe saves them itself. ``tokenizer``, when given, is
    saved in the output dir. Every rank must call this (saving gathers sharded weights);
    the main process gets the :class:`Run` back and the others None, their cue to stop
    (see :func:`writes_outputs`).
    """
    totals = track_totals(trainer)
    result = trainer.train(resume_from_checkpoint=resume)
    eval_metrics = trainer.evaluate() if evaluate else None
    out = Path(trainer.args.output_dir)
    if save_model:
        trainer.save_model(str(out if save_model is True else save_model))
    trainer.save_state()
    if not writes_outputs(trainer):
        return None
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return Run(trainer, result, eval_metrics, totals, out)


@dataclass
class RunFiles:
    """What :func:`write_run` wrote, for :func:`print_run`."""

    method: str
    adapter: bool
    metrics: dict
    metrics_path: Path
    card: Path


def write_run(run: Run, script, model_args, config, *, method: str, train_data, eval_data,
              metrics: dict, hyperparameters: dict, unit: str = "pairs",
              save_eval_pairs: bool = False, adapter: bool | None = None) -> RunFiles:
    """Write ``metrics.json``, the model card and, with ``save_eval_pairs``, ``eval_pairs.jsonl``.

    ``metrics.json`` holds the run's figures (:func:`final_metrics`), then the recipe's own
    ``metrics``, then the resolved configuration of ``script``, ``model_args`` and
    ``config``. The card counts ``train_data`` and ``eval_data`` (None: nothing held out)
    in ``unit``s and shows ``hyperparameters``; ``adapter`` (default: whether LoRA was
    used) picks its loading instructions.
    """
    figures = final_metrics(run.trainer.state.log_history, run.result, run.eval_metrics,
                            run.totals)
    figures.update(metrics)
    metrics_path = write_metrics(run.out, figures,
                                 resolved_config(script, model_args, config))
    datasets = {", ".join(script.dataset): len(train_data)}
    if eval_data is not None:
        datasets[script.eval_dataset or "held out from the above"] = len(eval_data)
        if save_eval_pairs:
            save_pairs(eval_data, run.out / "eval_pairs.jsonl")
    adapter = model_args.use_peft if adapter is None else adapter
    # resolve_model_spec left the resolved path in model_name_or_path
    card = write_model_card(run.out, method=method,
                            base_model=script.model or model_args.model_name_or_path,
                            datasets=datasets, hyperparameters=hyperparameters,
                            metrics=figures, adapter=adapter, unit=unit)
    return RunFiles(method, adapter, figures, metrics_path, card)


def print_run(run: Run, files: RunFiles, *, summary: str | None = None,
              saved: str | None = None, notes: Sequence[str] = ()) -> None:
    """Plot the training curves, then say how the run went and where its files are.

    ``summary`` ends the first line (default: the seconds per step); ``saved`` names what
    the output dir holds (default: the adapter or the model, and the tokenizer); each of
    ``notes`` is one more line at the end.
    """
    from alignment.report import render_run

    curves = render_run(run.out)
    m = files.metrics
    if summary is None:
        summary = f" ({m['seconds_per_step']:.2f} s/step)"
    if saved is None:
        saved = f"{'adapter' if files.adapter else 'model'} + tokenizer"
    print(f"\nalign {files.method}: {run.steps} steps in {m['train_runtime_s']:.0f} s{summary}")
    print(f"  {saved}: {run.out}")
    print(f"  metrics:     {files.metrics_path}")
    print(f"  model card:  {files.card}")
    print(f"  curves:      {curves}")
    for line in notes:
        print(f"  {line}")
