"""Distillation and AI-feedback pipelines built on distilabel."""
