"""`align merge`: folding adapters into bases and merging fine-tunes of one base.

The fine-tunes are made here in a moment: LoRA adapters with random (non-zero) B
matrices, and full models with noise added to every weight, all over the tiny model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from alignment.cli import main as align
from alignment.errors import ConfigError
from alignment.recipes.merge import merge_models, slerp


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def _params(path) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in _load(path).named_parameters()}


def make_adapter(base: Path, out: Path, seed: int, r: int = 4) -> Path:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_load(base), LoraConfig(r=r, lora_alpha=2 * r,
                                                   target_modules="all-linear"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:  # PEFT starts lora_B at zero: an untrained adapter is a no-op
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.save_pretrained(out)
    return out


def make_finetune(base: Path, out: Path, seed: int) -> Path:
    from transformers import AutoTokenizer

    model = _load(base)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def finetunes(tiny_model, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetunes")
    return {"a": make_finetune(tiny_model, root / "a", 1),
            "b": make_finetune(tiny_model, root / "b", 2),
            "lora1": make_adapter(tiny_model, root / "lora1", 3),
            "lora2": make_adapter(tiny_model, root / "lora2", 4)}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_adapter_matches_the_peft_model(tiny_model, finetunes, tmp_path):
    from peft import PeftModel

    out = tmp_path / "merged"
    assert align(["merge", "adapter", str(finetunes["lora1"]), "--output", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "tokenizer_config.json").exists()
    assert not (out / "adapter_config.json").exists()
    assert "align merge" in (out / "README.md").read_text()

    ids = torch.tensor([[1, 5, 9, 42, 7, 100, 3]])
    merged = _logits(_load(out), ids)
    peft = _logits(PeftModel.from_pretrained(_load(tiny_model), str(finetunes["lora1"])).eval(), ids)
    base = _logits(_load(tiny_model), ids)
    assert torch.allclose(merged, peft, atol=1e-5)
    assert not torch.allclose(merged, base, atol=1e-3)


def test_linear_half_half_is_the_average(tiny_model, finetunes, tmp_path):
    out = tmp_path / "avg"
    assert align(["merge", "models", "--base", str(tiny_model), str(finetunes["a"]),
                  str(finetunes["b"]), "--method", "linear", "--weights", "0.5", "0.5",
                  "--output", str(out)]) == 0
    a, b, merged = _params(finetunes["a"]), _params(finetunes["b"]), _params(out)
    assert merged.keys() == a.keys()
    for name in merged:
        assert torch.allclose(merged[name], (a[name] + b[name]) / 2, atol=1e-6), name
    assert json.loads((out / "merge.json").read_text())["weights"] == [0.5, 0.5]


def test_linear_merges_adapters_by_folding_them(tiny_model, finetunes, tmp_path):
    """Adapters become task vectors: the merge equals averaging the two folded models."""
    for name in ("lora1", "lora2"):
        assert align(["merge", "adapter", str(finetunes[name]), "-o", str(tmp_path / name)]) == 0
    merge_models(str(tiny_model), [str(finetunes["lora1"]), str(finetunes["lora2"])],
                 tmp_path / "avg")
    one, two, merged = _params(tmp_path / "lora1"), _params(tmp_path / "lora2"), _params(tmp_path / "avg")
    for name in merged:
        assert torch.allclose(merged[name], (one[name] + two[name]) / 2, atol=1e-5), name


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties"])
def test_sparse_merges_are_seeded_and_keep_shapes(method, tiny_model, finetunes, tmp_path):
    models = [str(finetunes["a"]), str(finetunes["b"])]
    runs = {}
    for tag, seed in (("x", 7), ("y", 7), ("z", 8)):
        merge_models(str(tiny_model), models, tmp_path / tag, method=method, density=0.3,
                     seed=seed)
        runs[tag] = _params(tmp_path / tag)
    base, a = _params(tiny_model), _params(finetunes["a"])
    for name, p in runs["x"].items():
        assert p.shape == base[name].shape
        assert torch.equal(p, runs["y"][name]), name  # same seed, same model
    # the merge moved away from the base, and is no copy of either input
    assert any(not torch.allclose(runs["x"][n], base[n]) for n in base)
    assert any(not torch.allclose(runs["x"][n], a[n]) for n in base)
    if method.startswith("dare"):  # random drops: another seed, another model
        assert any(not torch.equal(runs["x"][n], runs["z"][n]) for n in base)


def test_slerp_endpoints(tiny_model, finetunes, tmp_path):
    a, b = _params(finetunes["a"]), _params(finetunes["b"])
    for t, expected in ((0.0, a), (1.0, b)):
        out = tmp_path / f"t{t}"
        assert align(["merge", "models", "--base", str(tiny_model), str(finetunes["a"]),
                      str(finetunes["b"]), "--method", "slerp", "--t", str(t),
                      "-o", str(out)]) == 0
        merged = _params(out)
        for name in merged:
            assert torch.allclose(merged[name], expected[name], atol=1e-6), (t, name)


def test_slerp_closed_form():
    # orthonormal a, b: the arc is cos(t pi/2) a + sin(t pi/2) b, of unit length throughout
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    for t in (0.0, 0.25, 0.5, 0.9, 1.0):
        expected = math.cos(t * math.pi / 2) * a + math.sin(t * math.pi / 2) * b
        got = slerp(a, b, t)
        assert torch.allclose(got, expected, atol=1e-6) and abs(got.norm() - 1) < 1e-6
    # equal norms at any angle omega: the result is the rotation of a by t * omega
    omega = 1.2
    a = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[2 * math.cos(omega), 2 * math.sin(omega)], [0.0, 0.0]])
    got = slerp(a, b, 0.3)
    assert got.shape == a.shape
    expected = torch.tensor([[2 * math.cos(0.3 * omega), 2 * math.sin(0.3 * omega)], [0, 0]])
    assert torch.allclose(got, expected, atol=1e-6)
    # parallel vectors have no arc: the straight line is the limit
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a)


def test_adapter_cat_equals_the_full_linear_merge(tiny_model, finetunes, tmp_path):
    from peft import AutoPeftModelForCausalLM

    adapters = [str(finetunes["lora1"]), str(finetunes["lora2"])]
    merge_models(str(tiny_model), adapters, tmp_path / "cat", method="cat",
                 weights=[0.5, 0.5], as_adapter=True)
    merge_models(str(tiny_model), adapters, tmp_path / "full", weights=[0.5, 0.5])
    assert (tmp_path / "cat" / "adapter_config.json").exists()
    cfg = json.loads((tmp_path / "cat" / "adapter_config.json").read_text())
    assert cfg["r"] == 8  # cat stacks the two rank-4 adapters
    ids = torch.tensor([[3, 14, 15, 92, 6]])
    from_adapter = _logits(AutoPeftModelForCausalLM.from_pretrained(str(tmp_path / "cat")).eval(), ids)
    assert torch.allclose(from_adapter, _logits(_load(tmp_path / "full"), ids), atol=1e-4)


def test_mismatched_shapes_are_refused_before_writing(tiny_model, finetunes, tmp_path):
    from tests.helpers import build_tiny_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig.from_pretrained(str(tiny_model))
    config.intermediate_size = 96
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "other")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"other: parameter .*mlp.*shape"):
        merge_models(str(tiny_model), [str(finetunes["a"]), str(tmp_path / "other")], out)
    assert not out.exists()

    # an adapter trained on another base
    other_base = build_tiny_model(tmp_path / "other_base", seed=5)
    stray = make_adapter(other_base, tmp_path / "stray", 9)
    with pytest.raises(ConfigError, match="trained on .*other_base.*pass --base"):
        merge_models(str(tiny_model), [str(finetunes["lora1"]), str(stray)], out)
    assert not out.exists()


def test_option_errors(tiny_model, finetunes, tmp_path, capsys):
    base, a, b = str(tiny_model), str(finetunes["a"]), str(finetunes["b"])
    out = str(tmp_path / "o")
    cases = [([a, a, b, "--method", "slerp"], "exactly two"),
             ([a, b, "--method", "cat"], "add --as-adapter"),
             ([a, b, "--weights", "1"], "2 models"),
             ([a, b, "--density", "0.5"], "not linear"),
             ([a, b, "--as-adapter"], "no adapter_config.json"),
             ([a], "at least two")]
    for extra, message in cases:
        assert align(["merge", "models", "--base", base, "-o", out, *extra]) == 2
        assert message in capsys.readouterr().err, extra
    assert align(["merge", "adapter", a, "-o", out]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err
    assert not Path(out).exists()


@pytest.mark.slow
def test_adapter_naming_the_bundled_model(smollm2, tmp_path):
    """An adapter whose config names the bundled model by name folds into it."""
    adapter = make_adapter(smollm2, tmp_path / "lora", 1, r=2)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "smollm2"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    assert align(["merge", "adapter", str(adapter), "-o", str(tmp_path / "merged")]) == 0
    card = (tmp_path / "merged" / "README.md").read_text()
    assert "base_model: smollm2" in card
    assert (tmp_path / "merged" / "model.safetensors").stat().st_size > 100e6
