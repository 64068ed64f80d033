"""Fixtures for pipeline tests (deterministic fake LLM)."""
