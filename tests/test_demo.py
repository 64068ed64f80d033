"""The walking skeleton end to end on tiny models: generate, judge, pair, DPO, evaluate."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def demo_module():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import demo
        yield demo
    finally:
        sys.path.remove(str(ROOT / "examples"))


def test_demo_loop_on_tiny_models(demo_module, tiny_model, tmp_path):
    from safetensors.torch import load_file

    from alignment.data import read_rows

    out = tmp_path / "demo"
    rc = demo_module.main([
        "--out", str(out), "--teacher", str(tiny_model), "--judge", str(tiny_model),
        "--student", str(tiny_model), "--num-instructions", "6", "--num-responses", "3",
        "--max-new-tokens", "8", "--margin", "0", "--max-steps", "2",
        "--heldout-fraction", "0.34", "--no-win-rate"])
    assert rc == 0
    ranked = read_rows(out / "ranked.jsonl")
    assert len(ranked) == 6 and all(len(r["responses"]) == 3 for r in ranked)
    train, held = read_rows(out / "pairs_train.jsonl"), read_rows(out / "pairs_heldout.jsonl")
    # held out by prompt: no prompt is on both sides
    assert train and held
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
    for row in train + held:
        assert row["score_chosen"] > row["score_rejected"]
    # the adapter was trained: LoRA B matrices start at zero and moved
    weights = load_file(out / "dpo" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval"]["pairs"] == len(held)
    assert 0.0 <= summary["eval"]["policy"]["reward_accuracy"] <= 1.0
    assert (out / "dpo" / "training_curves.png").stat().st_size > 1000
    for path in summary["artefacts"].values():
        assert Path(path).exists(), path
