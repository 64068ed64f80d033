"""Every YAML recipe shipped in alignment/recipes loads into its command's dataclasses.

A recipe names its command with a ``# command: NAME`` line in its header; without one, the
word of its file name that names a training command does (``dpo_cpu.yaml`` -> ``align dpo``).
Each is parsed by that command's own ``parse_args`` — the parser ``align NAME --config``
uses — so a key that is not a field of ScriptArguments / TRL's config / ModelConfig fails
here, and every value must land on a field unchanged.
"""

from __future__ import annotations

import importlib
import re
from enum import Enum
from pathlib import Path

import pytest
import yaml

import alignment.recipes
from alignment.errors import ConfigError

RECIPES_DIR = Path(alignment.recipes.__file__).parent
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))
TRAINING_COMMANDS = ("sft", "rm", "dpo", "kto", "orpo", "rloo", "grpo")
# keys whose parsed value is a normalised form of the YAML one ("none" -> [])
NORMALISED = {"report_to"}


def command_for(path: Path) -> str:
    header = re.search(r"^# command: (\w+)\s*$", path.read_text(), re.M)
    if header:
        return header.group(1)
    named = [word for word in path.stem.split("_") if word in TRAINING_COMMANDS]
    assert len(named) == 1, (f"{path.name}: add a '# command: NAME' header line; the file "
                             f"name names {named or 'no'} training command")
    return named[0]


def parse_recipe(path: Path, *extra: str) -> tuple:
    module = importlib.import_module(f"alignment.recipes.{command_for(path)}")
    (parsed, _chosen) = module.parse_args(["--config", str(path), *extra])
    return parsed


def _plain(value):
    return value.value if isinstance(value, Enum) else value


def test_recipes_are_found():
    names = {p.name for p in RECIPES}
    assert {"dpo_cpu.yaml", "tiny_smoke.yaml", "smollm2_sft_cpu.yaml", "smollm2_dpo_cpu.yaml",
            "zephyr_7b_beta_sft_qlora.yaml", "zephyr_7b_beta_dpo_qlora.yaml",
            "zephyr_7b_beta_sft_full.yaml", "zephyr_7b_beta_dpo_full.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_loads_into_its_commands_dataclasses(path):
    import torch

    text = path.read_text()
    assert text.startswith("#") and ("align " in text.split("\n\n")[0]
                                     or "accelerate launch" in text), \
        f"{path.name}: the header comment must say how to launch it"
    config = yaml.safe_load(text)
    extra = []
    if config.get("bf16") and not torch.cuda.is_available():
        # TrainingArguments refuses bf16 on a CPU without native support; the key itself is
        # still checked (the YAML is read first), only its value is overridden here
        extra = ["--bf16", "false"]
    parsed = parse_recipe(path, *extra)

    for key, value in config.items():
        holders = [obj for obj in parsed if hasattr(obj, key)]
        assert holders, f"{path.name}: `{key}` is a field of no dataclass"
        if key in NORMALISED or (extra and key == "bf16"):
            continue
        got = _plain(getattr(holders[0], key))
        if isinstance(got, list) and not isinstance(value, list):
            value = [value]
        assert got == value, f"{path.name}: `{key}` is {value!r} in the YAML, parsed {got!r}"


def test_zephyr_recipes_carry_the_published_settings():
    """The handbook's Zephyr-7B-beta hyper-parameters, as the parser reads them."""
    sft = parse_recipe(RECIPES_DIR / "zephyr_7b_beta_sft_full.yaml", "--bf16", "false")[1]
    dpo = parse_recipe(RECIPES_DIR / "zephyr_7b_beta_dpo_full.yaml", "--bf16", "false")[1]
    assert (sft.learning_rate, sft.max_length, sft.num_train_epochs) == (2e-5, 2048, 1)
    assert (dpo.beta, dpo.learning_rate, dpo.max_length) == (0.01, 5e-7, 1024)
    assert dpo.per_device_train_batch_size * dpo.gradient_accumulation_steps * 8 == 128
    script, qlora, model = parse_recipe(RECIPES_DIR / "zephyr_7b_beta_dpo_qlora.yaml",
                                        "--bf16", "false")
    assert model.load_in_4bit and model.use_peft and model.lora_r == 16
    assert qlora.beta == 0.01 and qlora.learning_rate == 5e-6
    assert script.dataset == ["data/ultrafeedback_binarized:train_prefs"]


def test_an_unknown_key_is_refused_naming_file_and_key(tmp_path):
    bad = tmp_path / "dpo_typo.yaml"
    bad.write_text((RECIPES_DIR / "tiny_smoke.yaml").read_text() + "learning_rte: 1.0e-3\n")
    with pytest.raises(ConfigError, match=r"dpo_typo.yaml: unknown key\(s\) learning_rte"):
        parse_recipe(bad)


def test_a_shipped_recipe_is_reached_by_name_from_any_folder(tmp_path, monkeypatch):
    from alignment.recipes import dpo

    monkeypatch.chdir(tmp_path)  # no checkout here: the installed recipe is what loads
    by_path = dpo.parse_args(["--config", str(RECIPES_DIR / "tiny_smoke.yaml")])[0]
    for name in ("tiny_smoke", "tiny_smoke.yaml"):
        script, config, model = dpo.parse_args(["--config", name])[0]
        assert config.max_steps == by_path[1].max_steps == 4
        assert (script.dataset, config.max_length) == (by_path[0].dataset, by_path[1].max_length)
    # a file of that name in the working folder wins over the shipped recipe
    (tmp_path / "tiny_smoke.yaml").write_text("max_steps: 7\n")
    assert dpo.parse_args(["--config", "tiny_smoke.yaml"])[0][1].max_steps == 7


def test_an_unknown_recipe_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    from alignment.recipes import dpo

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"dpo_cpux: config file not found.*dpo_cpu, "):
        dpo.parse_args(["--config", "dpo_cpux"])


@pytest.mark.parametrize("command", TRAINING_COMMANDS + ("cpo",))
def test_help_lists_every_field_of_the_commands_script_arguments(command, capsys):
    from dataclasses import fields

    from alignment.cli import main as align
    from alignment.recipes._args import TrainArguments

    module = importlib.import_module(f"alignment.recipes.{command}")
    assert issubclass(module.ScriptArguments, TrainArguments)  # the shared fields, once
    assert align([command, "--help"]) == 0
    out = capsys.readouterr().out
    for f in fields(module.ScriptArguments):
        assert f"--{f.name}" in out, f"align {command} --help: --{f.name} missing"
