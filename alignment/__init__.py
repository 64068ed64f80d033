"""align: build alignment datasets and preference-tune chat models."""

__version__ = "0.1.0"
