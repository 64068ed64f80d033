from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.errors import AlignError
from alignment.models import ModelNotAvailable, resolve_model


def test_tiny_model_loads_and_generates(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                  add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5 or tok.eos_token_id in out[0]


def test_resolve_model_local_folder_and_errors(tiny_model, tmp_path):
    assert resolve_model(str(tiny_model)) == str(tiny_model)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailable, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(ModelNotAvailable, match="neither a bundled model"):
        resolve_model("not-a-model")


@pytest.mark.slow
def test_bundled_smollm2_prepares_and_answers(smollm2):
    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert "quantization_config" not in model.config.to_dict()
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1]:])


def test_cli_help_lists_every_command(capsys):
    from alignment.cli import COMMANDS, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    assert main(["no-such-command"]) == 2


def test_generate_help_lists_every_pipeline_and_each_module_runs(capsys):
    import importlib

    from pipelines.cli import PIPELINES, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, entry in PIPELINES.items():
        assert f"  {name} " in out, name
        assert callable(importlib.import_module(entry.module).main), entry.module
    assert main(["no-such-pipeline"]) == 2
    assert "unknown pipeline 'no-such-pipeline'" in capsys.readouterr().err
