"""Prompt tuning through `align sft` and `align dpo` (``--peft prompt-tuning``).

Only a soft prompt of ``--num_virtual_tokens`` embeddings trains; the base stays frozen.
The saved adapter must say PROMPT_TUNING, reload to the same outputs, and be refused by
`align merge`, which has no weights to fold it into.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import write_pairs
from tests.helpers import write_chats

N = 8
HIDDEN = 64  # the tiny model's hidden size (tests/conftest.py)


def repeated_chats(path: Path, n: int = 8) -> Path:
    """One short exchange repeated: something a soft prompt can learn in a few steps."""
    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"messages": [
                {"role": "user", "content": "Sort the numbers 3 1 2."},
                {"role": "assistant", "content": "1 2 3"}]}) + "\n")
    return path


def losses(run: Path) -> list[float]:
    state = json.loads((run / "trainer_state.json").read_text())
    return [e["loss"] for e in state["log_history"] if "loss" in e]


@pytest.fixture(scope="module")
def sft_run(tiny_model, tmp_path_factory) -> tuple[Path, str]:
    import io
    from contextlib import redirect_stdout

    out = tmp_path_factory.mktemp("pt_sft") / "run"
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert align(["sft", "--dataset", str(repeated_chats(out.parent / "chats.jsonl")),
                      "--model", str(tiny_model), "--output_dir", str(out), "--max_steps", "6",
                      "--eval_split", "0", "--save_strategy", "no", "--logging_steps", "1",
                      "--learning_rate", "0.3",
                      "--peft", "prompt-tuning", "--num_virtual_tokens", str(N)]) == 0
    return out, printed.getvalue()


def test_sft_trains_only_the_soft_prompt(sft_run, tiny_model):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    run, printed = sft_run
    assert f"trainable params: {N * HIDDEN:,}" in printed
    weights = load_file(run / "adapter_model.safetensors")
    assert {tuple(v.shape) for v in weights.values()} == {(N, HIDDEN)}
    config = json.loads((run / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == N
    card = (run / "README.md").read_text()
    assert "prompt-tuning adapter" in card and "align merge" not in card
    # the base is untouched: the reloaded model's base weights are the original ones
    original = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(run))
    base = dict(model.get_base_model().named_parameters())
    for name, p in original.named_parameters():
        assert torch.equal(p, base[name]), name


def test_sft_prompt_tuning_loss_falls(sft_run):
    run, _ = sft_run
    curve = losses(run)
    # every row is the same and the base is frozen: only the soft prompt can move the loss
    assert len(curve) == 6 and all(b < a for a, b in zip(curve, curve[1:])), curve
    assert curve[-1] < curve[0] - 0.1, curve


def test_saved_soft_prompt_reloads_to_the_same_logits(sft_run, tiny_model):
    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    run, _ = sft_run
    ids = torch.tensor([[5, 17, 33, 40, 2]])
    first = AutoPeftModelForCausalLM.from_pretrained(str(run)).eval()
    again = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                      str(run)).eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        a, b = first(input_ids=ids).logits, again(input_ids=ids).logits
        base = plain(input_ids=ids).logits
    assert a.shape == (1, N + ids.shape[1], a.shape[-1])
    assert torch.allclose(a, b)
    assert not torch.allclose(a[:, N:], base, atol=1e-4)  # the prompt changes the outputs


def test_merge_refuses_a_soft_prompt(sft_run, tmp_path, capsys):
    run, _ = sft_run
    assert align(["merge", "adapter", str(run), "--output", str(tmp_path / "merged")]) == 2
    assert "prompt" in capsys.readouterr().err.lower()
    assert not (tmp_path / "merged").exists()


def test_eval_scores_answers_after_the_soft_prompt(sft_run, tiny_model):
    """`align eval`'s loader takes the run folder; its log-probs skip the virtual positions."""
    import torch
    from transformers import AutoModelForCausalLM

    from alignment.evaluate import completion_logps, load_policy

    run, _ = sft_run
    policy, reference, tokenizer, _ = load_policy(str(run), None)
    assert reference is None and policy.peft_config["default"].num_virtual_tokens == N
    pair = {"prompt": [5, 17, 33], "chosen": [40, 2], "rejected": [41, 3, 9]}
    chosen, rejected = completion_logps(policy, [pair], tokenizer.pad_token_id, None, 2)
    with torch.no_grad():
        ids = torch.tensor([pair["prompt"] + pair["chosen"]])
        logps = torch.log_softmax(policy(input_ids=ids).logits[0, N:], -1)
    expected = sum(logps[t - 1, ids[0, t]].item() for t in range(3, 5))
    assert chosen[0] == pytest.approx(expected, abs=1e-4)
    # with the adapter off it is the plain base, as for the DPO reference
    plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with policy.disable_adapter():
        off = completion_logps(policy, [pair], tokenizer.pad_token_id, None, 2)
    base = completion_logps(plain, [pair], tokenizer.pad_token_id, None, 2)
    assert off[0] + off[1] == pytest.approx(base[0] + base[1], abs=1e-4)
    assert off[0][0] != pytest.approx(chosen[0], abs=1e-4)


def test_dpo_prompt_tuning_trains(tiny_model, tmp_path):
    out = tmp_path / "run"
    assert align(["dpo", "--dataset", str(write_pairs(tmp_path / "pairs.jsonl", n=8)),
                  "--model", str(tiny_model), "--output_dir", str(out), "--max_steps", "6",
                  "--eval_split", "0", "--save_strategy", "no", "--logging_steps", "1",
                  "--peft", "prompt-tuning", "--num_virtual_tokens", str(N)]) == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING"
    curve = losses(out)
    assert curve[-1] < curve[0], curve


@pytest.mark.parametrize("extra, needle", [
    (["--peft", "prompt-tuning", "--num_virtual_tokens", "0"], "num_virtual_tokens"),
    (["--peft", "prompt-tuning", "--use_peft", "false"], "contradicts"),
    (["--prompt_tuning_init_text", "Answer:"], "prompt-tuning only"),
])
def test_bad_prompt_tuning_flags_exit_2(tiny_model, tmp_path, capsys, extra, needle):
    code = align(["sft", "--dataset", str(write_chats(tmp_path / "c.jsonl", n=4)),
                  "--model", str(tiny_model), "--output_dir", str(tmp_path / "o"),
                  "--max_steps", "1", "--eval_split", "0", *extra])
    assert code == 2
    assert needle in capsys.readouterr().err
