"""Distillation and AI-feedback pipelines built on distilabel."""

import multiprocessing as _mp

# distilabel starts one process per step with the default start method (fork on Linux)
# and fixes its pool's context class when distilabel.pipeline is first imported, so the
# choice has to be made here, before that import. A parent that has already run torch
# (a test session, a notebook, a script that prepared a model) holds OpenMP, allocator
# and tokenizer locks that a forked child inherits mid-state: step processes then hang
# for good. A forkserver child starts from a clean interpreter instead.
if _mp.get_start_method(allow_none=True) is None:
    _mp.set_start_method("forkserver")
