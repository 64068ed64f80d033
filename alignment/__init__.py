"""align: build alignment datasets and preference-tune chat models."""

# the one place the version is written (pyproject.toml reads it from here)
__version__ = "0.1.0"
