"""Shared training helpers: configuration layering, shipped recipes, chat-template handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignment import training
from alignment.errors import ConfigError

# Every shipped YAML recipe (dpo_cpu.yaml included) is loaded through its command's
# parse_args by tests/alignment/training/test_config.py.


def _dpo_args(argv):
    from alignment.recipes import dpo

    return dpo.parse_args(argv)


def test_precedence_defaults_yaml_command_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("beta: 0.3\nlearning_rate: 1.0e-4\nlogging_steps: 2\n")
    (script, config, model_args), chosen = _dpo_args(
        ["--config", str(recipe), "--dataset", "a.jsonl", "--beta", "0.5"])
    assert config.beta == 0.5                   # command line beats YAML
    assert config.learning_rate == 1e-4         # YAML beats align's default
    assert config.logging_steps == 2
    assert "learning_rate" not in chosen and "beta" not in chosen
    assert model_args.use_peft is True and chosen["use_peft"][0] is True  # align default
    assert config.gradient_checkpointing is False
    assert script.dataset == ["a.jsonl"]


def test_user_settings_beat_working_defaults():
    (_, config, model_args), chosen = _dpo_args(
        ["--dataset", "a.jsonl", "--use_peft", "false", "--gradient_checkpointing", "true"])
    assert model_args.use_peft is False and config.gradient_checkpointing is True
    assert "use_peft" not in chosen and "gradient_checkpointing" not in chosen


def test_cpu_default_precision_follows_the_cpu():
    (_, config, _), chosen = _dpo_args(["--dataset", "a.jsonl"])
    if training.has_accelerator():
        pytest.skip("CPU defaults only apply without an accelerator")
    assert config.bf16 is training.cpu_has_fast_bf16()
    assert "bf16" in chosen


def test_unknown_yaml_key_is_an_error(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("beta: 0.1\ndataset_mixer: [a.jsonl]\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown key\(s\) dataset_mixer"):
        _dpo_args(["--config", str(recipe)])


def test_unknown_flag_is_an_error():
    with pytest.raises(ConfigError, match="--not_a_flag"):
        _dpo_args(["--dataset", "a.jsonl", "--not_a_flag", "1"])


def _trl_tokenized(model_dir: Path, rows: list[dict], tokenizer=None, wrap: bool = True):
    """The token columns TRL's DPOTrainer builds for ``rows`` after our normalisation."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    tokenizer = tokenizer or training.load_tokenizer(str(model_dir))
    pairs = training.chat_format_pairs(datasets.Dataset.from_list(rows), tokenizer, wrap)
    args = DPOConfig(output_dir=str(model_dir.parent / "out"), report_to="none", bf16=False,
                     gradient_checkpointing=False, max_length=None)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                         train_dataset=pairs, processing_class=tokenizer)
    return trainer.train_dataset, tokenizer


def _assert_one_bos_one_eos(dataset, tok):
    for row in dataset:
        prompt = row["prompt_ids"]
        assert not (prompt[:2] == [tok.bos_token_id] * 2), tok.decode(prompt)
        for key in ("chosen_ids", "rejected_ids"):
            ids = row[key]
            assert ids.count(tok.eos_token_id) == 1, tok.decode(ids)
            tail = ids[ids.index(tok.eos_token_id) + 1:]
            assert tok.decode(tail).strip() == "", tok.decode(ids)


PLAIN = [{"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "hola"}] * 2
CONVERSATIONAL = [{"prompt": [{"role": "user", "content": "What is the capital of France?"}],
                   "chosen": [{"role": "assistant", "content": "Paris."}],
                   "rejected": [{"role": "assistant", "content": "hola"}]}] * 2


@pytest.mark.parametrize("rows", [PLAIN, CONVERSATIONAL], ids=["plain", "conversational"])
@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_bos_model"])
def test_chat_template_applied_once(request, fixture, rows):
    model_dir = request.getfixturevalue(fixture)
    dataset, tok = _trl_tokenized(model_dir, rows)
    _assert_one_bos_one_eos(dataset, tok)
    first = dataset[0]
    text = tok.decode(first["prompt_ids"] + first["chosen_ids"])
    assert "What is the capital of France?" in text and "Paris." in text
    if fixture == "tiny_bos_model":  # the template itself opens with BOS: exactly once
        assert first["prompt_ids"][0] == tok.bos_token_id
        assert first["prompt_ids"].count(tok.bos_token_id) == 1


def test_plain_text_is_wrapped_in_the_chat_format(tiny_model):
    dataset, tok = _trl_tokenized(tiny_model, PLAIN)
    assert tok.decode(dataset[0]["prompt_ids"]).endswith("<|im_start|>assistant\n")


def test_pretemplated_text_with_a_bos_adding_tokenizer(tiny_bos_model):
    # A Llama-style tokenizer that prepends BOS itself, fed text that already has one,
    # and completions that already end with EOS: neither may appear twice.
    from tokenizers.processors import TemplateProcessing

    tok = training.load_tokenizer(str(tiny_bos_model))
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.bos_token_id)])
    assert tok("hi")["input_ids"][0] == tok.bos_token_id
    rows = [{"prompt": "<s>[INST] What is the capital of France? [/INST]",
             "chosen": " Paris.</s>", "rejected": " hola</s>\n"}] * 2
    dataset, tok = _trl_tokenized(tiny_bos_model, rows, tokenizer=tok)
    _assert_one_bos_one_eos(dataset, tok)
    assert dataset[0]["prompt_ids"].count(tok.bos_token_id) == 1


def test_pairs_missing_a_column_are_refused():
    import datasets

    from alignment.errors import DataError

    ds = datasets.Dataset.from_list([{"prompt": "hi", "chosen": "a"}])
    with pytest.raises(DataError, match="rejected"):
        training.check_pairs(ds, "mem")


def test_split_eval_holds_out_at_least_one():
    import datasets

    ds = datasets.Dataset.from_list(PLAIN * 5)
    train, held = training.split_eval(ds, 0.05, seed=0)
    assert len(held) == 1 and len(train) == 9
    assert training.split_eval(ds, 0, seed=0) == (ds, None)


def test_lora_reference_is_the_base_with_adapters_off(tiny_model, tmp_path):
    # No second copy of the weights: TRL keeps no ref_model and no "ref" adapter, and
    # precomputed reference log-probs (a DPOConfig flag) land in the dataset.
    import datasets
    from trl import DPOConfig, DPOTrainer, ModelConfig, get_peft_config

    tok = training.load_tokenizer(str(tiny_model))
    pairs = training.chat_format_pairs(datasets.Dataset.from_list(PLAIN), tok)
    model_args = ModelConfig(use_peft=True, lora_target_modules=["all-linear"])
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", bf16=False,
                     gradient_checkpointing=False, precompute_ref_log_probs=True,
                     per_device_train_batch_size=2)
    trainer = DPOTrainer(model=training.load_causal_lm(str(tiny_model), model_args), args=args,
                         train_dataset=pairs, processing_class=tok,
                         peft_config=get_peft_config(model_args))
    assert trainer.ref_model is None
    assert list(trainer.model.peft_config) == ["default"]
    assert "ref_chosen_logps" in trainer.train_dataset.column_names


def test_tokens_per_second_counts_every_step(tiny_model, tmp_path):
    # 5 steps logged every 2: without the final-step log the last logged token count
    # would stop at step 4 and understate the rate
    import datasets
    from trl import DPOConfig, DPOTrainer

    tok = training.load_tokenizer(str(tiny_model))
    pairs = training.chat_format_pairs(datasets.Dataset.from_list(PLAIN * 2), tok)
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", bf16=False, use_cpu=True,
                     gradient_checkpointing=False, per_device_train_batch_size=1,
                     max_steps=5, logging_steps=2, save_strategy="no")
    model = training.load_causal_lm(str(tiny_model), _model_config())
    trainer = DPOTrainer(model=model, args=args, train_dataset=pairs, processing_class=tok)
    totals = training.track_totals(trainer)
    result = trainer.train()
    m = training.final_metrics(trainer.state.log_history, result, None, totals)

    logged = [e for e in trainer.state.log_history if "num_tokens" in e]
    assert [e["step"] for e in logged] == [2, 4, 5]
    # what was trained on: five batches of one pair (all pairs are alike), the attention
    # mask of its chosen and rejected sequences
    batch = next(iter(trainer.get_train_dataloader()))
    assert logged[-1]["num_tokens"] == 5 * int(batch["attention_mask"].sum())
    assert m["tokens_per_s"] == pytest.approx(logged[-1]["num_tokens"] / m["train_runtime_s"])
    assert m["train"]["num_tokens"] == logged[-1]["num_tokens"]


def test_final_metrics_leaves_out_a_rate_it_cannot_vouch_for():
    # a trainer built without track_totals: the last token count is from step 4 of 5
    from transformers.trainer_utils import TrainOutput

    output = TrainOutput(global_step=5, training_loss=0.5, metrics={"train_runtime": 10.0})
    history = [{"loss": 0.7, "num_tokens": 100, "step": 2},
               {"loss": 0.6, "num_tokens": 200, "step": 4},
               {"train_runtime": 10.0, "step": 5}]
    assert training.final_metrics(history, output, None)["tokens_per_s"] is None
    history.insert(2, {"loss": 0.5, "num_tokens": 250, "step": 5})
    assert training.final_metrics(history, output, None)["tokens_per_s"] == 25.0


def _model_config():
    from trl import ModelConfig

    return ModelConfig(dtype="float32")


def test_dpo_cpu_working_defaults():
    if training.has_accelerator():
        pytest.skip("CPU defaults only apply without an accelerator")
    (_, config, model_args), chosen = _dpo_args(["--dataset", "a.jsonl"])
    # use_cpu: under `accelerate launch` the processes join one gloo group
    assert config.use_cpu is True and "use_cpu" in chosen
    # one pair per micro-batch, 4 per optimizer step; no checkpointing, no LoRA dropout
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (1, 4)
    assert config.gradient_checkpointing is False and model_args.lora_dropout == 0.0
    # from the measured sweep (README): every linear layer, rate 5e-4, two epochs, beta 0.5
    assert model_args.lora_target_modules in (["all-linear"], "all-linear")
    assert (config.learning_rate, config.num_train_epochs, config.beta) == (5e-4, 2, 0.5)
    assert config.loss_type in ("sigmoid", ["sigmoid"])  # plain DPO: the loss starts at ln 2


def test_unset_lora_targets_follow_the_architecture(tiny_model):
    from trl import ModelConfig

    model_args = ModelConfig(use_peft=True, lora_target_modules=None)
    model = training.load_causal_lm(str(tiny_model), model_args)
    training.resolve_lora_targets(model_args, model)
    assert model_args.lora_target_modules == ["q_proj", "v_proj"]  # Llama: PEFT's default
    chosen = ModelConfig(use_peft=True, lora_target_modules=["all-linear"])
    before = chosen.lora_target_modules  # ModelConfig keeps a one-item list as its item
    training.resolve_lora_targets(chosen, model)
    assert chosen.lora_target_modules == before == "all-linear"  # a user's choice is kept
