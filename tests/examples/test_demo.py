"""The demo end to end on the tiny model: constraint prompts, two on-policy rounds, eval."""

import json
import sys
from pathlib import Path

import pytest
from tests.helpers import ROOT


@pytest.fixture()
def demo_module():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import demo
        yield demo
    finally:
        sys.path.remove(str(ROOT / "examples"))


def test_demo_loop_on_tiny_models(demo_module, tiny_model, tmp_path, capsys):
    from safetensors.torch import load_file

    from alignment.data import read_rows

    out = tmp_path / "demo"
    rc = demo_module.main([
        "--out", str(out), "--student", str(tiny_model), "--rounds", "2",
        "--prompts-per-round", "8", "--candidates", "2", "--max-new-tokens", "6",
        "--dpo", "--max_steps 2", "--no-win-rate", "--keep-truncated"])
    assert rc == 0
    train = read_rows(out / "constraints" / "train.jsonl")
    held = read_rows(out / "constraints" / "heldout.jsonl")
    assert not {r["task_id"] for r in train} & {r["task_id"] for r in held}
    # the demo's prompts carry the format constraints only, no arithmetic problems
    names = {spec["name"] for r in train + held for spec in r["verifiers"]}
    assert "final_answer" not in names and {"lowercase", "quoted", "json_keys"} <= names
    assert len(held) >= 40
    for k in (1, 2):
        pairs = read_rows(out / "loop" / f"round-{k}" / "pairs.jsonl")
        assert pairs and all(p["score_chosen"] > p["score_rejected"] for p in pairs)
        # the held-out prompts never reach training
        assert not {p["prompt"] for p in pairs} & {r["prompt"] for r in held}
    # round 2 continued from round 1's adapter, which had moved from zero
    weights = load_file(out / "loop" / "round-1" / "dpo" / "adapter_model.safetensors")
    assert any(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)
    card = json.loads((out / "loop" / "round-2" / "dpo" / "metrics.json").read_text())
    assert card["config"]["ScriptArguments"]["init_adapter"].endswith("round-1/dpo")
    summary = json.loads((out / "summary.json").read_text())
    following = summary["final_round"]["following"]
    assert following["prompts"] == len(held) and following["follow_rate"]["ci95"] is not None
    assert summary["final_round"]["factual"]["questions"] == 30
    assert (out / "loop" / "loop.png").stat().st_size > 1000
    for path in summary["artefacts"].values():
        assert Path(path).exists(), path
    printed = capsys.readouterr().out
    assert "follow rate (all checks)" in printed and "factual" in printed
