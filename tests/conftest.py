"""Shared fixtures: tiny random-weight models built locally, in well under a second.

The tiny models are real transformers models (Llama architecture, hidden size 64,
two layers) with a byte-level BPE tokenizer trained here on a few hundred words, so
every code path (chat templates, generation, TRL trainers, PEFT) runs for real
without a download. The bundled SmolLM2 is used by tests marked ``slow``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import BOS_TEMPLATE, build_tiny_model

# Everything align caches goes under a per-run folder unless the caller set one;
# the bundled model cache is reused across runs through ALIGN_MODELS_CACHE below.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

pytest_plugins = ["tests.fixtures_pipelines", "tests.fixtures_annotation"]


def _shared_models_dir() -> str:
    from alignment.models import models_dir

    return str(models_dir())


# Prepared models are shared by every test, through the environment: distilabel's step
# processes come from a forkserver that keeps the environment of the test that started it,
# so a per-test value would point later tests' steps at an earlier test's folder.
os.environ.setdefault("ALIGN_MODELS_DIR", _shared_models_dir())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny ChatML causal LM folder (hidden 64, 2 layers)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_bos_model(tmp_path_factory) -> Path:
    """A tiny causal LM whose chat template starts with a BOS token."""
    return build_tiny_model(tmp_path_factory.mktemp("tinybos") / "model", BOS_TEMPLATE, seed=1)


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> Path:
    """A tiny sequence-classification reward model sharing the ChatML tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tinyrm") / "model", reward_model=True)


@pytest.fixture(scope="session")
def varied_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with an untied random output layer.

    With tied embeddings a random 2-layer model just repeats its last input token, so
    greedy outputs would match trivially; a random lm_head makes them vary."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, tie_word_embeddings=False)
    torch.manual_seed(3)
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.randn_like(model.lm_head.weight))
    out = tmp_path_factory.mktemp("varied") / "model"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The bundled SmolLM2-135M-Instruct, prepared once into the align cache."""
    from alignment.models import prepare_model

    return prepare_model("smollm2")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Each test gets its own ALIGN_HOME, but shares the prepared bundled models."""
    from alignment import models

    real_models = models.models_dir()
    monkeypatch.setenv("ALIGN_HOME", str(tmp_path / "align-home"))
    assert models.models_dir() == real_models  # ALIGN_MODELS_DIR keeps it shared
