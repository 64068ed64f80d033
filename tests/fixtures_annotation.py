"""Fixtures for annotation tests (the real Argilla server)."""
