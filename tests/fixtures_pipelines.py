"""Fixtures for pipeline tests (deterministic fake LLM)."""

from __future__ import annotations

import pytest


@pytest.fixture
def fake_llm():
    """A fresh deterministic teacher: every output is a pure function of its input."""
    from pipelines.fake import FakeLLM

    return FakeLLM()
