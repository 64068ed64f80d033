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

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A template that starts with a BOS token, like Llama 2 / Mistral: used to check
# that nothing adds a second BOS when prompts are tokenised.
BOS_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'system' %}{{ '<<SYS>>' + message['content'] + '<</SYS>>' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)

_CORPUS = """
The quick brown fox jumps over the lazy dog. A helpful assistant answers questions
clearly and politely. What is the capital of France? Paris is the capital of France.
Explain photosynthesis in simple terms. Plants turn sunlight, water and carbon dioxide
into sugar and oxygen. Write a short poem about the sea. Give me three tips for sleeping
better. Rate the response from 1 to 5. The answer is correct and concise. Translate
hello into Spanish: hola. Sort the numbers 3 1 2. Python code: def add(a, b): return a + b
User: hi Assistant: hello! How can I help you today? Instruction Input Response
system user assistant chosen rejected prompt score rating 0 1 2 3 4 5 6 7 8 9 10
""".strip()


def build_tiny_model(path: Path, template: str = CHATML_TEMPLATE, *,
                     reward_model: bool = False, seed: int = 0) -> Path:
    """Write a tiny Llama model + locally trained tokenizer to ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (LlamaConfig, LlamaForCausalLM,
                              LlamaForSequenceClassification, PreTrainedTokenizerFast)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS.split("\n") * 4, trainer=trainer)
    chatml = template == CHATML_TEMPLATE
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>" if chatml else "<s>",
        eos_token="<|im_end|>" if chatml else "</s>",
        pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = template
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    if reward_model:
        config.num_labels = 1
        model = LlamaForSequenceClassification(config)
    else:
        model = LlamaForCausalLM(config)
        model.generation_config.pad_token_id = fast.pad_token_id
        model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


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
