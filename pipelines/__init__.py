"""Distillation and AI-feedback pipelines built on distilabel."""

import os as _os
import warnings as _warnings
from pathlib import Path as _Path

# the seed files shipped with the pipelines (tasks, topics, facts, prompts)
DATA_DIR = _Path(__file__).parent / "data"

# On the happy path distilabel logs a few screens of INFO per run (from this process and
# from every step process), and importing it makes pydantic warn, once per process, about
# two field names of distilabel's own InferenceEndpointsBaseClient. None of it is ours to
# act on, so by default only WARNING and above get through; `--verbose` (see
# runner.teacher_args) lets everything through. distilabel reads DISTILABEL_LOG_LEVEL in
# each process it starts, and step processes start from a fresh interpreter (a forkserver,
# see runner.start_steps_from_forkserver), so both settings travel in the environment:
# the level as distilabel's own knob, the warning filter as PYTHONWARNINGS (its message
# field is a literal prefix). A DISTILABEL_LOG_LEVEL the user set is left alone.
_USER_LEVEL = _os.environ.get("DISTILABEL_LOG_LEVEL")
_PYDANTIC = r"pydantic\._internal\._fields"
_NOISE = r'Field "\w+" in InferenceEndpointsBaseClient has conflict with protected namespace'
_CHILD_FILTERS = [f'ignore:Field "{name}" in InferenceEndpointsBaseClient:UserWarning:'
                  "pydantic._internal._fields" for name in ("model_id", "model_display_name")]


def library_output(verbose: bool) -> None:
    """Show the libraries' INFO logs and warnings (``verbose``), or only what is WARNING or
    worse, from now on in this process and in the step processes it starts."""
    if verbose:
        if (_USER_LEVEL or "").upper() != "DEBUG":
            _os.environ["DISTILABEL_LOG_LEVEL"] = "INFO"
    elif _USER_LEVEL is None:
        _os.environ["DISTILABEL_LOG_LEVEL"] = "WARNING"
    _warnings.filterwarnings("default" if verbose else "ignore", message=_NOISE,
                             category=UserWarning, module=_PYDANTIC)
    others = [f for f in _os.environ.get("PYTHONWARNINGS", "").split(",")
              if f and f not in _CHILD_FILTERS]
    _os.environ["PYTHONWARNINGS"] = ",".join(others + ([] if verbose else _CHILD_FILTERS))
    if not _os.environ["PYTHONWARNINGS"]:
        del _os.environ["PYTHONWARNINGS"]


def verbose() -> bool:
    """Whether distilabel logs at INFO (or DEBUG) in this process."""
    return _os.environ.get("DISTILABEL_LOG_LEVEL", "INFO").upper() in ("DEBUG", "INFO")


# a level the user exported decides; unset, the default is quiet
library_output(verbose=_USER_LEVEL is not None and verbose())
