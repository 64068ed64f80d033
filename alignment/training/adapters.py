"""The trained parameters: LoRA (TRL's config, the layers it adapts, an adapter to continue
from) or a soft prompt (PEFT's prompt tuning), and what the model card records of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from alignment.errors import ConfigError


def peft_config(script, model_args, model_path: str):
    """The PEFT config the trainer wraps the model with: None for a full fine-tune, a
    ``PromptTuningConfig`` for ``--peft prompt-tuning``, else TRL's LoRA config."""
    if not model_args.use_peft:
        return None
    if script.peft != "prompt-tuning":
        from trl import get_peft_config

        return get_peft_config(model_args)
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    text = script.prompt_tuning_init_text
    return PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=script.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=text or None,
        # the text is tokenised with the model's own tokenizer, as PEFT reloads it
        tokenizer_name_or_path=model_path if text else None)


def peft_hyperparameters(script, model_args) -> dict:
    """What the model card records about the trained parameters."""
    if not model_args.use_peft:
        return {}
    if script.peft == "prompt-tuning":
        return {"peft": "prompt-tuning", "num_virtual_tokens": script.num_virtual_tokens,
                "prompt_tuning_init": "text" if script.prompt_tuning_init_text else "random"}
    return {"lora_r": model_args.lora_r, "lora_alpha": model_args.lora_alpha,
            "lora_target_modules": model_args.lora_target_modules}


def resolve_lora_targets(model_args, model) -> None:
    """Fill in ``lora_target_modules`` when it was left unset (None).

    Unset means the layers PEFT adapts by default for the model's architecture (the
    attention's q_proj and v_proj on Llama, Mistral and Qwen); an architecture PEFT has
    no default for gets every linear layer.
    """
    if not model_args.use_peft or model_args.lora_target_modules:
        return
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

    found = defaults.get(getattr(model.config, "model_type", None))
    model_args.lora_target_modules = list(found) if found else ["all-linear"]


def check_init_adapter(folder: str, model_path: str, model_args) -> None:
    """Refuse an adapter to continue from that is not a LoRA adapter of this base."""
    config = Path(folder) / "adapter_config.json"
    if not config.is_file():
        raise ConfigError(f"--init_adapter {folder}: no adapter_config.json there; pass the "
                          "output folder of an earlier LoRA run")
    if not model_args.use_peft:
        raise ConfigError("--init_adapter continues a LoRA adapter; it needs --use_peft true")
    from alignment.models import ModelNotAvailable, check_weight_files

    try:
        check_weight_files(folder)
    except ModelNotAvailable as e:
        raise ConfigError(f"--init_adapter: {e}") from None
    recorded = json.loads(config.read_text()).get("base_model_name_or_path")
    if recorded and Path(recorded).exists() and Path(recorded).resolve() != Path(model_path).resolve():
        raise ConfigError(f"--init_adapter {folder} was trained on {recorded}, not on "
                          f"{model_path}; give the same --model")
