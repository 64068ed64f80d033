"""The inference dtype: chosen from the machine, or forced by ALIGN_DTYPE."""

import pytest

from alignment.engine import pick_dtype
from alignment.errors import ConfigError


def test_align_dtype_forces_the_choice(monkeypatch):
    for name in ("float32", "bfloat16"):
        monkeypatch.setenv("ALIGN_DTYPE", name)
        assert pick_dtype() == (name, "ALIGN_DTYPE asks for it")
    monkeypatch.setenv("ALIGN_DTYPE", "float16")
    with pytest.raises(ConfigError, match="float32 or bfloat16"):
        pick_dtype()
    monkeypatch.delenv("ALIGN_DTYPE")
    assert pick_dtype()[0] in ("float32", "bfloat16")
