"""The shared-prompt DPO forward gives TRL's loss and gradients, on less work."""

from __future__ import annotations

import pytest
import torch

from alignment import shared_prompt

PAIRS = [
    {"prompt": "What is the capital of France?", "chosen": "Paris is the capital of France.",
     "rejected": "dog"},
    {"prompt": "Sort the numbers 3 1 2.", "chosen": "1 2 3",
     "rejected": "The quick brown fox jumps over the lazy dog. Rate the response."},
    {"prompt": "Translate hello into Spanish.", "chosen": "hola", "rejected": "hello"},
]


def build_trainer(model_path, tmp_path, *, loss_type="sigmoid", peft=True, attn="sdpa",
                  task_type=None):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, attn_implementation=attn)
    args = DPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=3,
                     loss_type=[loss_type], bf16=False, use_cpu=True, report_to="none",
                     gradient_checkpointing=False, label_smoothing=0.1 if loss_type == "robust" else 0.0)
    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in PAIRS]
    peft_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                             init_lora_weights=False, task_type=task_type) if peft else None
    # (random lora_B: the policy differs from its reference)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok, peft_config=peft_config)
    return trainer


def loss_and_grads(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.zero_grad()
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if k != "num_tokens"}
    return loss.detach(), grads, metrics, batch


@pytest.mark.parametrize("loss_type,peft,attn,task_type", [
    ("sigmoid", True, "sdpa", "CAUSAL_LM"),  # what align dpo builds (PeftModelForCausalLM)
    ("ipo", True, "eager", None), ("robust", False, "sdpa", None)])
def test_same_loss_gradients_and_metrics_as_trl(tiny_model, tmp_path, monkeypatch, loss_type, peft,
                                               attn, task_type):
    trainer = build_trainer(tiny_model, tmp_path, loss_type=loss_type, peft=peft, attn=attn,
                            task_type=task_type)
    if not peft:  # full fine-tune: perturb the policy so it differs from its reference copy
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.add_(0.02 * torch.randn_like(p))
    base_loss, base_grads, base_metrics, batch = loss_and_grads(trainer)
    assert shared_prompt.pair_layout(batch["input_ids"], batch["attention_mask"],
                                     batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100))
    assert shared_prompt.enable(trainer) is None
    calls = []
    packed_forward = shared_prompt.shared_forward
    monkeypatch.setattr(shared_prompt, "shared_forward",
                        lambda *a, **k: calls.append(1) or packed_forward(*a, **k))
    loss, grads, metrics, _ = loss_and_grads(trainer)
    assert len(calls) == 2  # the policy and the reference both went through the packed rows
    assert torch.allclose(loss, base_loss, atol=1e-5), (loss, base_loss)
    assert base_loss.abs() > 0
    assert grads.keys() == base_grads.keys() and grads
    for name, g in grads.items():
        assert torch.allclose(g, base_grads[name], atol=1e-5, rtol=1e-4), name
    for key in ("rewards/margins", "logps/chosen", "logps/rejected", "entropy",
                "mean_token_accuracy", "logits/chosen"):
        assert metrics[key] == pytest.approx(base_metrics[key], abs=1e-4), key


def test_packing_shares_the_prompt_and_hides_the_chosen_answer():
    # pair 0: prompt [5, 6, 7], chosen [8, 9], rejected [10]; pair 1: prompt [5], chosen [11], rejected [12, 13]
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 11, 0, 0, 0], [5, 6, 7, 10, 0], [5, 12, 13, 0, 0]])
    mask = (torch.tensor([5, 2, 4, 3])[:, None] > torch.arange(5)[None, :]).long()
    labels = ids.clone()
    labels[:, 0] = -100
    labels[0, :3] = labels[2, :3] = -100
    labels[mask == 0] = -100
    layout = shared_prompt.pair_layout(ids, mask, labels)
    assert (layout.prompt, layout.chosen, layout.rejected) == ([3, 1], [2, 1], [1, 2])
    packed, pos, allowed, pair_index, source = shared_prompt.pack(ids, layout, "bool", torch.float32)
    assert packed[0].tolist() == [5, 6, 7, 8, 9, 10] and packed[1, :4].tolist() == [5, 11, 12, 13]
    assert pos[0].tolist() == [0, 1, 2, 3, 4, 3] and pos[1, :4].tolist() == [0, 1, 1, 2]
    # the rejected token (packed 5) sees the prompt and itself, not the chosen tokens 3-4
    assert allowed[0, 0, 5].tolist() == [True, True, True, False, False, True]
    # chosen 8, 9 scored from packed 2, 3; chosen 11 from 0; rejected 10 from the prompt's end
    # (2); rejected 12 from 0 and 13 from packed 2 (the 12)
    assert list(zip(pair_index.tolist(), source.tolist())) == [(0, 2), (0, 3), (1, 0), (0, 2),
                                                               (1, 0), (1, 2)]


def test_batches_without_the_pair_layout_are_left_to_trl():
    ids = torch.tensor([[5, 6, 7], [5, 9, 7]])
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :1] = -100
    assert shared_prompt.pair_layout(ids, mask, labels) is not None
    different_prompt = labels.clone()
    different_prompt[1, 1] = -100  # prompts of different lengths
    assert shared_prompt.pair_layout(ids, mask, different_prompt) is None
    left_padded = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert shared_prompt.pair_layout(ids, left_padded, labels) is None
    assert shared_prompt.pair_layout(ids[:1], mask[:1], labels[:1]) is None  # odd rows


def test_unsupported_attention_is_reported(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    assert shared_prompt.supported(model) is None
    model.config._attn_implementation = "flash_attention_2"
    assert "takes no custom mask" in shared_prompt.supported(model)


def test_align_dpo_trains_on_the_packed_rows(tiny_model, tmp_path, monkeypatch):
    import json

    from alignment.cli import main as align

    calls = []
    packed_forward = shared_prompt.shared_forward
    monkeypatch.setattr(shared_prompt, "shared_forward",
                        lambda *a, **k: calls.append(1) or packed_forward(*a, **k))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    args = ["dpo", "--dataset", str(data), "--model", str(tiny_model), "--eval_split", "0",
            "--max_steps", "1", "--gradient_accumulation_steps", "1", "--save_strategy", "no"]
    assert align([*args, "--output_dir", str(tmp_path / "on"), "--reference_cache", "off"]) == 0
    assert len(calls) == 2  # one pair: the policy's forward and the reference's
    calls.clear()
    # with the reference cache, the reference pass over every pair is packed as well
    assert align([*args, "--output_dir", str(tmp_path / "cached")]) == 0
    assert len(calls) > 2
    calls.clear()
    assert align([*args, "--output_dir", str(tmp_path / "off"), "--share_prompt", "false"]) == 0
    assert calls == []
