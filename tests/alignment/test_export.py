"""`align export gguf`: the file transformers reads back (``gguf_file=``) gives the same
logits and token ids as the merged model it was written from."""

from __future__ import annotations

import json

import pytest

from alignment.cli import main as align

TEXT = "What is the capital of France? Paris is."


@pytest.fixture(scope="module")
def adapter_run(tiny_model, tmp_path_factory):
    """A LoRA adapter on the tiny model whose weights are not zero (so merging matters)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("export") / "run"
    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                           target_modules="all-linear"))
    peft.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model)
    return out


def merged_logits(run, text=TEXT):
    import torch

    from alignment.export import load_run

    model, tok, _ = load_run(run)
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits, ids


def gguf_logits(path, text=TEXT):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=torch.float32).eval()
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits, ids, tok


@pytest.mark.parametrize("dtype,atol", [("f32", 1e-4), ("f16", 2e-2)])
def test_exported_adapter_run_loads_back_with_the_merged_models_logits(adapter_run, tmp_path,
                                                                       dtype, atol, capsys):
    import torch

    out = tmp_path / f"model-{dtype}.gguf"
    assert align(["export", "gguf", str(adapter_run), "-o", str(out), "--dtype", dtype]) == 0
    assert "adapter folded into" in capsys.readouterr().out
    want, want_ids = merged_logits(adapter_run)
    got, got_ids, tok = gguf_logits(out)
    assert torch.equal(got_ids, want_ids)  # the tokenizer survived: same ids
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=atol), float((got - want).abs().max())
    # the base alone is different: the adapter really was folded in
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(
        json.loads((adapter_run / "adapter_config.json").read_text())["base_model_name_or_path"],
        dtype=torch.float32).eval()
    with torch.no_grad():
        assert not torch.allclose(base(want_ids).logits, got, atol=atol)
    assert tok.chat_template and "im_start" in tok.chat_template
    assert not list(tmp_path.glob(".*tmp*"))


def test_rope_rows_are_interleaved_per_head():
    import torch

    from alignment.export import interleave_rope_rows

    # one head of dimension 4: rows (a0 a1 | b0 b1) become (a0 b0 a1 b1)
    w = torch.arange(8.0).reshape(4, 2)
    assert interleave_rope_rows(w, 1)[:, 0].tolist() == [0.0, 4.0, 2.0, 6.0]
    # two heads are reordered each on its own
    w2 = torch.arange(8.0).reshape(8, 1)
    assert interleave_rope_rows(w2, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_bad_inputs_exit_2(tmp_path, capsys):
    assert align(["export", "gguf", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert align(["export", "gguf", str(tmp_path / "empty")]) == 2
    assert "neither an adapter" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.gguf"))


@pytest.mark.slow
def test_the_bundled_model_exports_and_reads_back(tmp_path):
    import torch

    from alignment.models import resolve_model

    folder = resolve_model("smollm2")
    out = tmp_path / "smollm2.gguf"
    assert align(["export", "gguf", str(folder), "-o", str(out), "--dtype", "f32"]) == 0
    from gguf import GGUFReader

    fields = GGUFReader(str(out)).fields
    pre = fields["tokenizer.ggml.pre"]
    assert bytes(pre.parts[pre.data[0]]).decode() == "smollm"
    want, want_ids = merged_logits(folder)
    got, got_ids, _ = gguf_logits(out)
    assert torch.equal(got_ids, want_ids)
    assert torch.allclose(got, want, atol=1e-3), float((got - want).abs().max())
