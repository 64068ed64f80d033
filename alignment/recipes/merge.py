"""align merge: fold a LoRA adapter into its base, or merge several fine-tunes of one base.

    align merge adapter ADAPTER_DIR --output OUT [--base MODEL]
    align merge models --base BASE M1 M2 [...] --output OUT
                       [--method linear|ties|dare_linear|dare_ties|slerp]
                       [--weights W1 W2 ...] [--density 0.5] [--t 0.5] [--seed 0]
                       [--as-adapter]  (adapters only; adds --method cat|svd|magnitude_prune)

Every fine-tune M is a full model folder or a LoRA adapter folder trained on BASE. Merging
works on task vectors, tau_i = theta_i - theta_base (an adapter becomes one by folding it
into the base first), with PEFT's merge maths (``peft.utils.merge_utils``):

- ``linear``: base + sum_i w_i tau_i. Weights default to 1/N, which is the plain average of
  the models; weights that do not sum to 1 scale the task vectors (task arithmetic).
- ``ties``: keep the largest ``density`` fraction of each tau_i, elect a sign per entry,
  average the entries that agree with it. Weights default to 1.
- ``dare_linear`` / ``dare_ties``: drop entries at random (keeping ``density``, rescaled by
  1/density), then combine linearly or TIES-style; ``--seed`` makes them reproducible.
- ``slerp``: spherical interpolation between exactly two task vectors, tensor by tensor,
  at ``--t`` (0 gives the first model, 1 the second). No installed library offers it for
  full models (mergekit would, but it pins other versions of our dependencies), so it is
  written out below.

With ``--as-adapter`` (every input a LoRA adapter) the result is one adapter built by PEFT's
``add_weighted_adapter``; ``cat`` there is exact, ``svd`` re-factorises to a chosen rank.

Writes OUT/model.safetensors (or the adapter), the tokenizer, ``merge.json`` with the
settings and a model card ``README.md``. Shapes and architectures are checked against the
base before anything is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignment.errors import ConfigError

FULL_METHODS = ("linear", "ties", "dare_linear", "dare_ties", "slerp")
# combination types of peft's LoraModel.add_weighted_adapter that --as-adapter offers
ADAPTER_METHODS = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune", "cat", "svd")


# ---------------------------------------------------------------------------------------
# Maths on tensors


def slerp(a, b, t: float, eps: float = 1e-8):
    """Spherical linear interpolation from tensor ``a`` (t=0) to tensor ``b`` (t=1).

    Both are treated as one flat vector. With Omega the angle between them,
        slerp(a, b, t) = sin((1 - t) Omega) / sin(Omega) * a + sin(t Omega) / sin(Omega) * b,
    which for unit vectors stays on the unit sphere, unlike the straight line between them.
    When the vectors are (anti)parallel or one is zero the angle is undefined or sin(Omega)
    vanishes, and plain linear interpolation is the limit the formula tends to, so that
    is returned instead.
    """
    import torch

    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    na, nb = a64.norm(), b64.norm()
    if na < eps or nb < eps:
        out = (1 - t) * a64 + t * b64
    else:
        cos = torch.clamp((a64.flatten() @ b64.flatten()) / (na * nb), -1.0, 1.0)
        omega = torch.arccos(cos)
        sin = torch.sin(omega)
        if sin < eps:
            out = (1 - t) * a64 + t * b64
        else:
            out = (torch.sin((1 - t) * omega) / sin) * a64 + (torch.sin(t * omega) / sin) * b64
    return out.to(a.dtype)


def merge_task_vectors(taus: list, method: str, weights: list[float],
                       density: float | None = None, t: float = 0.5):
    """One merged task vector from the task vectors of one tensor in each model."""
    import torch
    from peft.utils import merge_utils

    if method == "slerp":
        return slerp(taus[0], taus[1], t)
    w = torch.tensor(weights, dtype=taus[0].dtype)
    if method == "linear":
        return merge_utils.task_arithmetic(taus, w)
    if method == "ties":
        return merge_utils.ties(taus, w, density)
    if method == "dare_linear":
        return merge_utils.dare_linear(taus, w, density)
    if method == "dare_ties":
        return merge_utils.dare_ties(taus, w, density)
    raise ConfigError(f"unknown merge method '{method}'; choose one of {', '.join(FULL_METHODS)}")


# ---------------------------------------------------------------------------------------
# Models on disk


def _resolve(spec: str) -> str:
    from alignment.models import ModelNotAvailable, resolve_model

    try:
        path = resolve_model(spec)
    except ModelNotAvailable as e:
        raise ConfigError(str(e)) from None
    return str(Path(path).resolve()) if Path(path).exists() else path


def _adapter_config(folder: str | Path) -> dict | None:
    path = Path(folder) / "adapter_config.json"
    if not path.exists():
        return None
    config = json.loads(path.read_text())
    kind = config.get("peft_type", "LORA")
    if kind != "LORA":
        # a soft prompt (PROMPT_TUNING, P-tuning, prefix tuning) is extra input, not a
        # change to any weight: there is nothing to add to the base's matrices
        raise ConfigError(f"{folder}: a {kind} adapter cannot be merged: it adds "
                          f"{config.get('num_virtual_tokens', 'some')} learned virtual tokens in "
                          "front of every input instead of changing the weights, so there is "
                          "nothing to fold into the base; load it with PEFT (the run's model "
                          "card shows how) or `align eval --model "
                          f"{folder}`")
    return config


def _check_adapter_base(adapter: str, recorded: str | None, base: str) -> None:
    """An adapter applied to a base it was not trained on gives garbage silently."""
    if not recorded:
        return
    try:
        resolved = _resolve(recorded)
    except ConfigError:
        resolved = recorded  # moved or unreachable: compare the names as recorded
    if resolved != base:
        raise ConfigError(
            f"{adapter}: the adapter was trained on '{recorded}', not on the base '{base}'; "
            "merge fine-tunes of one base only, or pass --base with the model it was trained on")


def _load_lm(path: str):
    from transformers import AutoModelForCausalLM

    # dtype="auto" keeps each checkpoint's stored precision; merging happens in fp32 below
    return AutoModelForCausalLM.from_pretrained(path, dtype="auto")


def _load_weights(spec: str, base_path: str) -> dict:
    """Full weights of a fine-tune: a model folder as is, an adapter folded into the base."""
    folder = Path(spec)
    adapter = _adapter_config(folder)
    if adapter is None:
        model = _load_lm(_resolve(spec))
    else:
        from peft import PeftModel

        _check_adapter_base(spec, adapter.get("base_model_name_or_path"), base_path)
        model = PeftModel.from_pretrained(_load_lm(base_path), str(folder)).merge_and_unload()
    return {name: p.detach() for name, p in model.named_parameters()}


def _check_compatible(name: str, base_params: dict, params: dict) -> None:
    missing = sorted(set(base_params) - set(params))
    extra = sorted(set(params) - set(base_params))
    if missing or extra:
        raise ConfigError(
            f"{name}: not a fine-tune of the base: parameters "
            + (f"missing {missing[:3]}" if missing else "")
            + (" and " if missing and extra else "")
            + (f"unexpected {extra[:3]}" if extra else "")
            + "; every model must share the base's architecture")
    for key, p in base_params.items():
        if params[key].shape != p.shape:
            raise ConfigError(
                f"{name}: parameter {key} has shape {tuple(params[key].shape)}, the base has "
                f"{tuple(p.shape)}; every model must share the base's architecture and vocabulary")


# ---------------------------------------------------------------------------------------
# Verbs


def merge_adapter(adapter_dir: str | Path, output: str | Path, base: str | None = None) -> Path:
    """Fold a LoRA adapter into its base and save the plain model (safetensors)."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    config = _adapter_config(adapter_dir)
    if config is None:
        raise ConfigError(f"{adapter_dir}: no adapter_config.json; expected a LoRA adapter "
                          "folder such as the output of `align dpo`")
    base_spec = base or config.get("base_model_name_or_path")
    if not base_spec:
        raise ConfigError(f"{adapter_dir}/adapter_config.json names no base model; pass --base")
    base_path = _resolve(base_spec)
    model = PeftModel.from_pretrained(_load_lm(base_path), str(adapter_dir)).merge_and_unload()
    tokenizer = _tokenizer(adapter_dir, base_path)
    out = _save(model, tokenizer, output)
    _write_card(out, base_spec, {"method": "adapter folded into base (merge_and_unload)",
                                 "adapter": str(adapter_dir), "base": base_spec})
    return out


def merge_models(base: str, models: list[str], output: str | Path, method: str = "linear",
                 weights: list[float] | None = None, density: float | None = None,
                 t: float = 0.5, seed: int = 0, as_adapter: bool = False) -> Path:
    """Merge fine-tunes of ``base`` into one model (or, ``as_adapter``, one LoRA adapter)."""
    import torch

    weights, density = _check_merge_options(models, method, weights, density, t, as_adapter)
    base_path = _resolve(base)
    settings = {"method": method, "base": base, "models": list(models), "weights": weights,
                "density": density, "t": t if method == "slerp" else None, "seed": seed}
    if as_adapter:
        return _merge_adapters(base_path, models, output, method, weights, density, seed,
                               settings)

    base_model = _load_lm(base_path)
    base_params = {n: p.detach() for n, p in base_model.named_parameters()}
    # every model is read and checked before anything is computed or written
    tuned = []
    for spec in models:
        params = _load_weights(spec, base_path)
        _check_compatible(spec, base_params, params)
        tuned.append(params)
    # fork_rng: DARE's random masks come from the seed without touching the caller's RNG
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for name, p in base_params.items():
            theta0 = p.to(torch.float32)
            taus = [params[name].to(torch.float32) - theta0 for params in tuned]
            merged = theta0 + merge_task_vectors(taus, method, weights, density, t)
            p.copy_(merged.to(p.dtype))
    out = _save(base_model, _tokenizer(Path(base_path), base_path), output)
    _write_card(out, base, settings)
    return out


def _check_merge_options(models, method, weights, density, t, as_adapter):
    methods = ADAPTER_METHODS if as_adapter else FULL_METHODS
    if method not in methods:
        hint = (" (cat and svd combine LoRA adapters: add --as-adapter)"
                if method in ADAPTER_METHODS else "")
        raise ConfigError(f"--method {method} is not one of {', '.join(methods)}{hint}")
    if len(models) < 2:
        raise ConfigError(f"merging needs at least two models, got {len(models)}; to fold a "
                          "single adapter into its base use `align merge adapter`")
    if method == "slerp" and len(models) != 2:
        raise ConfigError(f"slerp interpolates between exactly two models, got {len(models)}")
    if method == "slerp" and not 0.0 <= t <= 1.0:
        raise ConfigError(f"--t must be in [0, 1], got {t}")
    if weights is None:
        averaging = method in ("linear", "dare_linear", "cat", "svd", "magnitude_prune")
        weights = [1.0 / len(models) if averaging else 1.0] * len(models)
    elif len(weights) != len(models):
        raise ConfigError(f"--weights has {len(weights)} values for {len(models)} models")
    uses_density = method in ("ties", "dare_linear", "dare_ties", "magnitude_prune")
    if uses_density:
        density = 0.5 if density is None else density
        if not 0.0 < density <= 1.0:
            raise ConfigError(f"--density must be in (0, 1], got {density}")
    elif density is not None:
        raise ConfigError(f"--density applies to ties, dare and magnitude_prune, not {method}")
    if as_adapter:
        not_adapters = [m for m in models if _adapter_config(m) is None]
        if not_adapters:
            raise ConfigError(f"--as-adapter needs LoRA adapter folders; {not_adapters[0]} has "
                              "no adapter_config.json (drop --as-adapter to merge full models)")
    return weights, density


def _merge_adapters(base_path, models, output, method, weights, density, seed, settings):
    import torch
    from peft import PeftModel

    for spec in models:
        _check_adapter_base(spec, _adapter_config(spec).get("base_model_name_or_path"), base_path)
    names = [f"input{i}" for i in range(len(models))]
    model = PeftModel.from_pretrained(_load_lm(base_path), str(models[0]), adapter_name=names[0])
    for name, spec in zip(names[1:], models[1:]):
        model.load_adapter(str(spec), adapter_name=name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            # "default" is the name PEFT saves at the folder's root
            model.add_weighted_adapter(names, weights, "default", combination_type=method,
                                       density=density)
        except ValueError as e:  # e.g. linear over adapters of different ranks
            raise ConfigError(f"PEFT cannot combine these adapters with {method}: {e}") from None
    model.set_adapter("default")
    for name in names:
        model.delete_adapter(name)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    _tokenizer(Path(models[0]), base_path).save_pretrained(out)
    _write_card(out, settings["base"], settings, adapter=True)
    return out


def _tokenizer(folder: Path, base_path: str):
    from transformers import AutoTokenizer

    # a recipe saves its (possibly fixed-up) tokenizer beside the adapter: prefer that one
    has_own = (folder / "tokenizer_config.json").exists()
    return AutoTokenizer.from_pretrained(str(folder) if has_own else base_path)


def _save(model, tokenizer, output: str | Path) -> Path:
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _write_card(out: Path, base: str, settings: dict, adapter: bool = False) -> None:
    (out / "merge.json").write_text(json.dumps(settings, indent=2))
    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in settings.items() if v is not None)
    if adapter:
        load = ("from peft import AutoPeftModelForCausalLM\n"
                f'model = AutoPeftModelForCausalLM.from_pretrained("{out}")')
    else:
        load = ("from transformers import AutoModelForCausalLM\n"
                f'model = AutoModelForCausalLM.from_pretrained("{out}")')
    (out / "README.md").write_text(f"""---
base_model: {base}
library_name: {"peft" if adapter else "transformers"}
tags: [align, merge]
---

# {out.name}

{"A LoRA adapter" if adapter else "A model"} made by `align merge` from `{base}`.

| setting | value |
|---|---|
{rows}

```python
{load}
```
""")


# ---------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align merge", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    a = sub.add_parser("adapter", help="fold a LoRA adapter into its base model")
    a.add_argument("adapter_dir", help="a LoRA adapter folder (with adapter_config.json)")
    a.add_argument("--output", "-o", required=True, help="folder for the merged model")
    a.add_argument("--base", help="base model; default: the one adapter_config.json names")
    m = sub.add_parser("models", help="merge several fine-tunes (models or adapters) of one base")
    m.add_argument("models", nargs="+", help="fine-tuned model folders or LoRA adapter folders")
    m.add_argument("--base", required=True, help="the base they were all fine-tuned from")
    m.add_argument("--output", "-o", required=True, help="folder for the merged model")
    m.add_argument("--method", default="linear",
                   help=f"{', '.join(FULL_METHODS)}; with --as-adapter also cat, svd, "
                        "magnitude_prune (default: linear)")
    m.add_argument("--weights", type=float, nargs="+",
                   help="one weight per model (default 1/N for linear and dare_linear, 1 for "
                        "ties and dare_ties)")
    m.add_argument("--density", type=float,
                   help="fraction of each task vector kept by ties/dare (default 0.5)")
    m.add_argument("--t", type=float, default=0.5, help="slerp position: 0 first model, 1 second")
    m.add_argument("--seed", type=int, default=0, help="seed for DARE's random drops")
    m.add_argument("--as-adapter", action="store_true",
                   help="combine LoRA adapters into one adapter instead of a full model")
    return parser


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.verb == "adapter":
        out = merge_adapter(args.adapter_dir, args.output, args.base)
    else:
        out = merge_models(args.base, args.models, args.output, args.method, args.weights,
                           args.density, args.t, args.seed, args.as_adapter)
    weights = next(out.glob("*.safetensors"), None)
    size = f" ({weights.stat().st_size / 2**20:.1f} MiB)" if weights else ""
    print(f"align merge: wrote {out}{size}")
    return 0

