"""`align sft` trains the token that ends an assistant turn, for every chat template it ships with.

A reply trained without its end-of-turn token (``<|im_end|>`` for ChatML, ``</s>`` for
Zephyr and Llama-2 style templates) gives a model that never learns to stop; the loss
looks healthy all the same. Each test runs the real ``align sft`` for one step and reads
the labels SFTTrainer built, through the trainer's own data collator: every trained span
must be exactly an assistant reply followed by its end-of-turn token, and nothing of a
user or system turn may be trained.

Templates covered: the tiny ChatML and BOS-first fixtures, the bundled SmolLM2's (with its
real tokenizer), Zephyr-7B-beta's (what the Zephyr recipes copy with ``chat_template_path``),
Qwen2.5's (a template TRL ships a ``{% generation %}`` copy of, so the assistant-only path
runs) and a marked template that leaves the end token out of its generation span.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import alignment.recipes
from alignment.cli import main as align
from tests.helpers import build_tiny_model

# The chat template of HuggingFaceH4/zephyr-7b-beta (its tokenizer_config.json), which the
# Zephyr SFT recipes copy onto Mistral-7B-v0.1 with `chat_template_path`. The hub is out of
# reach in tests, so the template is given here and rendered by a tiny local tokenizer.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}")
TEMPLATE_SOURCES = {"HuggingFaceH4/zephyr-7b-beta": ZEPHYR_TEMPLATE}

# ChatML whose {% generation %} span stops before <|im_end|>: the assistant mask alone
# would train every reply and never the stop.
MARKED_WITHOUT_END = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] }}{% endgeneration %}"
    "{% else %}{{ message['content'] }}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris is the capital of France."}],
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "Translate hello into Spanish."},
     {"role": "assistant", "content": "hola"},
     {"role": "user", "content": "Sort the numbers 3 1 2."},
     {"role": "assistant", "content": "1 2 3"}],
]


def write_chats(path: Path) -> Path:
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in CHATS * 2))
    return path


def set_eos(model_dir: Path, token: str) -> Path:
    """Make ``token`` the EOS of a tiny model folder, in its tokenizer and its config."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.eos_token = token
    tok.save_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    config.eos_token_id = tok.eos_token_id
    config.save_pretrained(model_dir)
    return model_dir


def sft_labels(model: Path, tmp_path: Path, monkeypatch, *extra: str) -> dict:
    """Run `align sft` for one step; return each training row's input ids and the labels
    the trainer's collator gives them, the tokenizer it trained with and the output dir."""
    from trl import SFTTrainer

    seen: dict = {}
    original = SFTTrainer.train

    def train(self, *args, **kwargs):
        seen["rows"] = [(row["input_ids"],
                         self.data_collator([dict(row)])["labels"][0].tolist())
                        for row in self.train_dataset]
        seen["tokenizer"] = self.processing_class
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "train", train)
    out = tmp_path / "out"
    assert align(["sft", "--dataset", str(write_chats(tmp_path / "chats.jsonl")),
                  "--model", str(model), "--output_dir", str(out), "--max_steps", "1",
                  "--eval_split", "0", "--save_strategy", "no", *extra]) == 0
    seen["out"] = out
    return seen


def trained_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    spans, current = [], []
    for token, label in zip(ids, labels):
        if label == -100:
            if current:
                spans.append(current)
            current = []
        else:
            assert label == token  # a trained position predicts its own token
            current.append(token)
    return spans + ([current] if current else [])


def assert_replies_end_with(seen: dict, end_token: str, every_turn: bool) -> None:
    """Each row trains its replies (the last one, or ``every_turn``), each closed by
    ``end_token``, and nothing else; the saved tokenizer stops on that token."""
    from transformers import AutoTokenizer

    tok = seen["tokenizer"]
    end_id = tok.convert_tokens_to_ids(end_token)
    assert end_id != tok.unk_token_id
    assert len(seen["rows"]) == len(CHATS) * 2
    for ids, labels in seen["rows"]:
        text = tok.decode(ids)
        messages = next(m for m in CHATS if all(x["content"] in text for x in m))
        expected = [m["content"] for m in messages if m["role"] == "assistant"]
        if not every_turn:
            expected = expected[-1:]
        spans = trained_spans(ids, labels)
        assert [tok.decode(s).strip() for s in spans] == [r + end_token for r in expected], text
        for span in spans:
            # the end-of-turn token itself is in the loss (trailing whitespace may follow)
            last = [t for t in span if tok.decode([t]).strip()][-1]
            assert last == end_id, text
        trained = tok.decode([t for s in spans for t in s])
        for messages in CHATS:
            for m in messages:
                if m["role"] != "assistant":
                    assert m["content"] not in trained, text
    saved = AutoTokenizer.from_pretrained(seen["out"])
    assert saved.eos_token == end_token  # generation stops on the token that was trained


def test_chatml_fixture_trains_im_end(tiny_model, tmp_path, monkeypatch):
    seen = sft_labels(tiny_model, tmp_path, monkeypatch)
    assert_replies_end_with(seen, "<|im_end|>", every_turn=False)


def test_bos_first_template_trains_eos(tiny_bos_model, tmp_path, monkeypatch):
    seen = sft_labels(tiny_bos_model, tmp_path, monkeypatch)
    assert_replies_end_with(seen, "</s>", every_turn=False)


@pytest.fixture(scope="module")
def smollm2_tokenizer_model(tmp_path_factory) -> Path:
    """A tiny random model behind the bundled SmolLM2's own tokenizer and template."""
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    from alignment.models import ModelNotAvailable, prepare_model

    try:
        bundled = prepare_model("smollm2")
    except ModelNotAvailable as e:
        pytest.skip(f"bundled SmolLM2 not installed: {e}")
    real = AutoConfig.from_pretrained(bundled)
    out = tmp_path_factory.mktemp("smol") / "model"
    config = LlamaConfig(vocab_size=real.vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         bos_token_id=real.bos_token_id, eos_token_id=real.eos_token_id,
                         pad_token_id=real.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "special_tokens_map.json"):
        if (Path(bundled) / name).exists():
            shutil.copy(Path(bundled) / name, out / name)
    return out


def test_bundled_smollm2_template_trains_im_end(smollm2_tokenizer_model, tmp_path, monkeypatch):
    seen = sft_labels(smollm2_tokenizer_model, tmp_path, monkeypatch, "--max_length", "128")
    assert "SmolLM" in seen["tokenizer"].chat_template  # the bundled template, not a stand-in
    assert_replies_end_with(seen, "<|im_end|>", every_turn=False)


def test_zephyr_template_copied_by_chat_template_path_trains_eos(tmp_path, monkeypatch):
    """The Zephyr recipes' path: a base without a template, the template copied from a
    tokenizer named by ``chat_template_path``."""
    base = build_tiny_model(tmp_path / "base", template=None)
    source = build_tiny_model(tmp_path / "zephyr", template=ZEPHYR_TEMPLATE)
    # a full fine-tune, as zephyr_7b_beta_sft_full.yaml: copying the template pads the tiny
    # vocabulary to a multiple of 64 and PEFT cannot train those new rows of a tied
    # embedding (Mistral's 32000 need no padding and are not tied)
    seen = sft_labels(base, tmp_path, monkeypatch, "--chat_template_path", str(source),
                      "--use_peft", "false", "--learning_rate", "1e-5")
    assert seen["tokenizer"].chat_template == ZEPHYR_TEMPLATE
    assert_replies_end_with(seen, "</s>", every_turn=False)


def test_template_with_a_marked_copy_trains_every_turn_and_its_end(tmp_path, monkeypatch):
    from trl.chat_template_utils import qwen2_5_chat_template

    model = set_eos(build_tiny_model(tmp_path / "qwen", template=qwen2_5_chat_template),
                    "<|im_end|>")
    seen = sft_labels(model, tmp_path, monkeypatch)
    metrics = json.loads((seen["out"] / "metrics.json").read_text())
    assert "assistant_only_loss" in metrics["loss_on"]
    assert_replies_end_with(seen, "<|im_end|>", every_turn=True)


def test_marked_template_without_the_end_token_falls_back_to_the_split(
        tiny_model, tmp_path, monkeypatch):
    template = tmp_path / "marked.jinja"
    template.write_text(MARKED_WITHOUT_END)
    seen = sft_labels(tiny_model, tmp_path, monkeypatch, "--chat_template_path", str(template))
    metrics = json.loads((seen["out"] / "metrics.json").read_text())
    assert "last assistant reply" in metrics["loss_on"]
    assert_replies_end_with(seen, "<|im_end|>", every_turn=False)


def test_assistant_only_loss_refused_when_the_end_token_is_not_marked(
        tiny_model, tmp_path, capsys):
    template = tmp_path / "marked.jinja"
    template.write_text(MARKED_WITHOUT_END)
    code = align(["sft", "--dataset", str(write_chats(tmp_path / "chats.jsonl")),
                  "--model", str(tiny_model), "--chat_template_path", str(template),
                  "--assistant_only_loss", "true", "--eval_split", "0"])
    assert code == 2 and "never learn to stop" in capsys.readouterr().err


def test_every_sft_recipe_template_is_covered_here():
    """A shipped SFT recipe trains with the bundled SmolLM2's template or one copied by
    ``chat_template_path``; both kinds are tested above, so a recipe bringing a new
    template must be added here."""
    recipes = Path(alignment.recipes.__file__).parent.glob("*.yaml")
    sft = [p for p in recipes if "# command: sft" in p.read_text()]
    assert sft
    for path in sft:
        recipe = yaml.safe_load(path.read_text())
        source = recipe.get("chat_template_path")
        if source:
            assert source in TEMPLATE_SOURCES, path.name
        else:
            assert recipe.get("model") == "smollm2", path.name
