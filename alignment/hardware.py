"""What hardware this process runs on: an accelerator, and whether the CPU has native bf16.

The one place align asks; training defaults, the inference dtype and the run notes all
follow from these answers.
"""

from __future__ import annotations

import os
from pathlib import Path


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def cpu_has_fast_bf16() -> bool:
    """True only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    Elsewhere PyTorch emulates bf16 on CPU and mixed precision runs slower than fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, and fp32 is always correct
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def environment_note() -> str:
    import torch

    threads = torch.get_num_threads()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return f"device={device} torch_threads={threads} cpus={os.cpu_count()}"
