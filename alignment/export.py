"""align export gguf: a trained model as one GGUF file, for llama.cpp and Ollama.

    align export gguf RUN_DIR [--output FILE.gguf] [--dtype f16|f32] [--base MODEL]

RUN_DIR is the output of a training command: a LoRA adapter (folded into its base first,
as ``align merge adapter`` does) or a full model folder. The file holds the weights in
float16 (default) or float32, the tokenizer (byte-level BPE: tokens, merges, special
tokens) and the chat template, under llama.cpp's names for the Llama architecture, which
SmolLM2 and the models trained from it use. ``transformers`` loads it back with
``gguf_file=``; ``tests/alignment/test_export.py`` compares those logits with the merged
model's. llama.cpp re-quantises it (``llama-quantize FILE.gguf out.gguf Q4_K_M``) and
Ollama imports it with a Modelfile of one line, ``FROM ./FILE.gguf``.

Written with the ``gguf`` package (llama.cpp's own writer): its tensor names and keys are
the format's, the mapping from Hugging Face names and the layout of q/k rows below are
the parts that depend on the architecture.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from alignment.errors import ConfigError

DTYPES = ("f16", "f32")

# Hugging Face parameter names (per layer) -> GGUF tensor names
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(hf_name: str) -> str:
    """The GGUF tensor name of a Llama parameter; ConfigError for one it has no name for."""
    if hf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[hf_name]
    parts = hf_name.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in LAYER_NAMES:
        return f"blk.{int(parts[2])}.{LAYER_NAMES[parts[3]]}"
    raise ConfigError(f"parameter {hf_name}: no GGUF name for it in a Llama model "
                      "(only the standard Llama layers can be exported)")


def interleave_rope_rows(weight, heads: int):
    """q/k projection rows from Hugging Face's rotary layout to llama.cpp's.

    Hugging Face rotates the two halves of each head's dimensions against each other
    (dimension i with i + d/2); llama.cpp rotates neighbouring pairs (2i with 2i + 1). Per
    head, the rows are reordered so that half-position i lands at 2i and i + d/2 at
    2i + 1; transformers' GGUF reader undoes exactly this when it loads the file.
    """
    rows = weight.shape[0]
    half = rows // heads // 2
    return (weight.reshape(heads, 2, half, *weight.shape[1:])
            .transpose(1, 2).reshape(weight.shape))


def token_types(tokenizer) -> tuple[list[str], list[int]]:
    """Every token in id order, and its GGUF type (1 normal, 3 control, 4 user-defined)."""
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    size = max(by_id) + 1
    special = set(tokenizer.all_special_ids)
    added = set(tokenizer.added_tokens_decoder)
    tokens, types = [], []
    for i in range(size):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(3 if i in special else 4 if i in added else 1 if i in by_id else 5)
    return tokens, types


def bpe_merges(tokenizer) -> list[str]:
    """The BPE merges of a fast tokenizer, as "left right" strings."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        raise ConfigError(f"tokenizer model {model.get('type')!r}: only byte-level BPE "
                          "tokenizers (SmolLM2's kind) can be exported to GGUF here")
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]


def pre_tokenizer_name(tokens: list[str]) -> str:
    """llama.cpp picks its pre-tokenizer (the regex that splits text before BPE) by name:
    SmolLM2's vocabulary gets "smollm", any other byte-level BPE the GPT-2 default."""
    smollm = len(tokens) == 49152 and tokens[:3] == ["<|endoftext|>", "<|im_start|>",
                                                    "<|im_end|>"]
    return "smollm" if smollm else "gpt2"


def rope_theta(config) -> float:
    """The rotary base: transformers 5 keeps it in ``rope_parameters``, 4 on the config."""
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") not in ("default", None):
        raise ConfigError(f"rotary scaling {rope.get('rope_type')!r}: GGUF export covers "
                          "plain rotary embeddings only")
    theta = rope.get("rope_theta") or getattr(config, "rope_theta", None)
    return float(theta or 10000.0)


def write_gguf(model, tokenizer, path: Path, dtype: str = "f16", name: str = "align") -> Path:
    """Write ``model`` (a Llama ``...ForCausalLM``) and its tokenizer as one GGUF file,
    atomically: a temp file beside ``path`` is renamed onto it when complete."""
    import gguf
    import numpy as np
    import torch

    config = model.config
    if config.model_type != "llama":
        raise ConfigError(f"model type {config.model_type!r}: GGUF export covers the Llama "
                          "architecture (SmolLM2 and models trained from it)")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    tokens, types = token_types(tokenizer)
    merges = bpe_merges(tokenizer)
    np_dtype = np.float16 if dtype == "f16" else np.float32

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    try:
        writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16"
                             else gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(rope_theta(config))
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_vocab_size(len(tokens))
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_tokenizer_name(tokens))
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_add_bos_token(False)
        writer.add_add_space_prefix(False)
        for add, token in ((writer.add_bos_token_id, tokenizer.bos_token_id),
                           (writer.add_eos_token_id, tokenizer.eos_token_id),
                           (writer.add_pad_token_id, tokenizer.pad_token_id),
                           (writer.add_unk_token_id, tokenizer.unk_token_id)):
            if token is not None:
                add(token)
        if tokenizer.chat_template:
            writer.add_chat_template(tokenizer.chat_template)

        tied = bool(getattr(config, "tie_word_embeddings", False))
        for hf_name, tensor in model.state_dict().items():
            if tied and hf_name == "lm_head.weight":
                continue  # llama.cpp reads the embedding matrix for the output when absent
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            t = tensor.detach().to(torch.float32)
            if hf_name.endswith("self_attn.q_proj.weight"):
                t = interleave_rope_rows(t, heads)
            elif hf_name.endswith("self_attn.k_proj.weight"):
                t = interleave_rope_rows(t, kv_heads)
            array = t.numpy()
            # norms stay float32, as llama.cpp's own converter keeps 1-D tensors
            writer.add_tensor(gguf_name(hf_name), array.astype(np_dtype if array.ndim > 1
                                                               else np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_run(run_dir: Path, base: str | None = None):
    """(model in float32, tokenizer, what it is) for a run folder: an adapter folded into
    its base, or a full model folder."""
    from alignment.recipes import merge

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a folder; give the output folder of a training "
                          "command (align sft/dpo/...) or a model folder")
    adapter = merge._adapter_config(run_dir)
    if adapter is None:
        if not (run_dir / "config.json").exists():
            raise ConfigError(f"{run_dir}: neither an adapter (adapter_config.json) nor a "
                              "model folder (config.json)")
        import torch
        from transformers import AutoModelForCausalLM

        from alignment.models import load_tokenizer

        model = AutoModelForCausalLM.from_pretrained(str(run_dir), dtype=torch.float32)
        return model.eval(), load_tokenizer(str(run_dir)), "model folder"
    from peft import PeftModel

    base_spec = base or adapter.get("base_model_name_or_path")
    if not base_spec:
        raise ConfigError(f"{run_dir}/adapter_config.json names no base model; pass --base")
    base_path = merge._resolve(base_spec)
    import torch
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(lm, str(run_dir)).merge_and_unload().eval()
    return model, merge._tokenizer(run_dir, base_path), f"adapter folded into {base_spec}"


def export_gguf(run_dir: str | Path, output: str | Path | None = None, dtype: str = "f16",
                base: str | None = None) -> tuple[Path, str]:
    run_dir = Path(run_dir)
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    out = Path(output) if output else run_dir / f"{run_dir.resolve().name}-{dtype}.gguf"
    model, tokenizer, what = load_run(run_dir, base)
    return write_gguf(model, tokenizer, out, dtype, name=run_dir.resolve().name), what


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="align export", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="format", required=True)
    p = sub.add_parser("gguf", help="one GGUF file for llama.cpp / Ollama (adapter merged)")
    p.add_argument("run_dir", help="output folder of a training command, or a model folder")
    p.add_argument("--output", "-o", help="the .gguf file (default: RUN_DIR/<name>-<dtype>.gguf)")
    p.add_argument("--dtype", default="f16", choices=DTYPES,
                   help="weight precision in the file (default f16; llama-quantize makes "
                        "Q8_0/Q4_K_M from it)")
    p.add_argument("--base", help="base model of an adapter (default: the one it names)")
    args = parser.parse_args(argv)
    path, what = export_gguf(args.run_dir, args.output, args.dtype, args.base)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB, {args.dtype}; {what})")
    print(f"  llama.cpp: llama-cli -m {path}    Ollama: echo 'FROM {path}' > Modelfile && "
          "ollama create NAME -f Modelfile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
