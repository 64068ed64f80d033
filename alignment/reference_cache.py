"""Reference log-probs of DPO pairs, computed once and kept on disk for the next run.

DPO compares the policy with a frozen reference on every pair: ``log p_ref(chosen)`` and
``log p_ref(rejected)``. Those two numbers depend only on the reference weights, the tokens
of the pair and how they are truncated, not on ``beta``, the loss type, the learning rate
or the policy, so a sweep over those settings, a resumed run or a second epoch all need
the same numbers again. Here they are computed once per pair and stored under
``ALIGN_HOME/reference/<key>.safetensors`` (``~/.cache/align/reference`` by default).

The key is a hash of
- the reference model: its path and a fingerprint of its files (``config.json`` and the
  index files by content, each weight file by name, size and modification time; a hub id
  by id, revision and commit), how it is loaded (dtype, quantisation, attention kernel)
  and computed (autocast, device type, ``ld_alpha``, the TRL version);
- the pairs as the model reads them: the token ids TRL produced (so the data, the
  tokenizer, the chat template and EOS handling are all in it) in their order;
- the truncation TRL's collator applies later (``max_length``, ``truncation_mode``).

Anything else (``beta``, ``loss_type``, the learning rate, a different output folder)
finds the same entry; any change of model, data or tokenisation misses it.

Why through TRL's precompute mode rather than our own loss: DPOTrainer already knows how
to train on reference log-probs given as the dataset columns ``ref_chosen_logps`` and
``ref_rejected_logps`` (its collator passes them through, and ``_compute_loss`` reads them
instead of running the reference whenever ``precompute_ref_logps`` is on). Its own
``precompute_ref_log_probs`` fills those columns in ``__init__`` but keeps them only in the
``datasets`` cache, which for an in-memory dataset is a temporary file deleted at exit, so
every run recomputes. We therefore build the trainer without it, fill the columns from this
cache (or compute them with TRL's public ``compute_ref_log_probs``, batch by batch, exactly
as its precompute does, and store them), and switch the precompute mode on. TRL is not
patched and every DPO loss variant stays TRL's code.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import ConfigError

# bump when what is stored, or how it is computed, changes: old entries then miss
CACHE_FORMAT = 1
TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def folder(setting: str) -> Path | None:
    """The cache folder a ``--reference_cache`` value names, or None for ``off``."""
    value = (setting or "").strip()
    if value.lower() in ("off", "false", "no", "0", "none"):
        return None
    if value.lower() in ("on", "true", "yes", "1", ""):
        from alignment.models import align_home

        return align_home() / "reference"
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--reference_cache {value}: is a file; give a folder, `on` "
                          "(ALIGN_HOME/reference) or `off`")
    return path


def unsupported(config) -> str | None:
    """Why the reference log-probs of this run cannot be cached, or None when they can."""
    if config.sync_ref_model:
        return "--sync_ref_model moves the reference during training"
    # Under DeepSpeed and FSDP the policy is not placed or sharded until training starts;
    # TRL's own precompute handles that, so it is left to it.
    if config.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "DeepSpeed places the model only when training starts"
    if config.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP shards the model only when training starts"
    return None


@dataclass
class Entry:
    """The reference log-probs of one dataset: where they came from and how long it took."""

    split: str
    key: str
    loaded: bool
    seconds: float
    pairs: int

    def describe(self) -> str:
        if self.loaded:
            return (f"reference log-probs: loaded from cache {self.key} "
                    f"({self.split}, {self.pairs} pairs, {self.seconds:.2f} s)")
        return (f"reference log-probs: computed for {self.pairs} {self.split} pairs in "
                f"{self.seconds:.1f} s, cached as {self.key}")

    def as_dict(self) -> dict:
        return {"key": self.key, "loaded": self.loaded, "seconds": round(self.seconds, 3),
                "pairs": self.pairs}


def attach(trainer, cache: Path, model_path: str, model_args) -> list[Entry]:
    """Give the trainer's datasets their reference log-probs, from ``cache`` or computed.

    Call on a DPOTrainer built with ``precompute_ref_log_probs=False`` (TRL would otherwise
    compute them again in ``__init__``), after any change to the model's forward. Afterwards
    the trainer runs in TRL's precompute mode: no reference forward during training."""
    reference = model_identity(model_path, trainer.ref_model or trainer.model, model_args)
    settings = compute_settings(trainer)
    entries = []
    trainer.train_dataset, entry = _with_reference(
        trainer, trainer.train_dataset, "train", cache, reference, settings,
        trainer.args.precompute_ref_batch_size or trainer.args.per_device_train_batch_size)
    entries.append(entry)
    if trainer.eval_dataset is not None:
        trainer.eval_dataset, entry = _with_reference(
            trainer, trainer.eval_dataset, "eval", cache, reference, settings,
            trainer.args.precompute_ref_batch_size or trainer.args.per_device_eval_batch_size)
        entries.append(entry)
    trainer.precompute_ref_logps = True
    trainer.args.precompute_ref_log_probs = True  # so the run's saved config says so
    if trainer.ref_model is not None:
        # a full fine-tune's reference copy has nothing left to do: TRL's precompute
        # mode does not keep one either
        trainer.ref_model = None
    return entries


# ---------------------------------------------------------------------------------------
# The key


def model_identity(model_path: str, model, model_args) -> dict:
    """What names the reference weights and how they are loaded.

    With LoRA the reference is the base with the adapter disabled, so this is the base
    model's folder whether the adapter is fresh or continued (``--init_adapter``)."""
    path = Path(model_path)
    if path.is_dir():
        files = {}
        for f in sorted(path.iterdir()):
            if f.name == "config.json" or f.name.endswith(".index.json"):
                files[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
            elif f.suffix in _WEIGHT_SUFFIXES:
                st = f.stat()
                files[f.name] = [st.st_size, st.st_mtime_ns]
        source = {"path": str(path.resolve()), "files": files}
    else:  # a hub id: transformers records the commit it resolved
        source = {"hub_id": model_path, "revision": model_args.model_revision,
                  "commit": getattr(model.config, "_commit_hash", None)}
    loading = {name: getattr(model_args, name, None) for name in (
        "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "use_bnb_nested_quant",
        "bnb_4bit_quant_storage")}
    loading["dtype"] = str(model.dtype)
    loading["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    return {"source": source, "loading": loading}


def compute_settings(trainer) -> dict:
    """The settings, other than weights and tokens, that change the stored numbers."""
    import trl

    args = trainer.args
    return {"format": CACHE_FORMAT, "trl": trl.__version__,
            "device": trainer.accelerator.device.type, "bf16": bool(args.bf16),
            "fp16": bool(args.fp16), "ld_alpha": args.ld_alpha,
            "max_length": args.max_length, "truncation_mode": args.truncation_mode}


def token_digest(dataset) -> str:
    """A hash of the pairs' token ids, row by row in order (arrow buffers, no Python loop
    over tokens)."""
    import numpy as np

    h = hashlib.sha256(f"{len(dataset)} rows".encode())
    table = dataset.select_columns(list(TOKEN_COLUMNS)).with_format("arrow")
    for batch in table.iter(batch_size=8192):
        for name in TOKEN_COLUMNS:
            column = batch[name].combine_chunks()
            h.update(name.encode())
            h.update(column.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
            h.update(column.flatten().to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
    return h.hexdigest()


def cache_key(reference: dict, settings: dict, tokens: str) -> str:
    text = json.dumps({"reference": reference, "settings": settings, "tokens": tokens},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------------------
# Load, compute, store


def _with_reference(trainer, dataset, split: str, cache: Path, reference: dict,
                    settings: dict, batch_size: int):
    import torch
    from accelerate.utils import broadcast_object_list

    missing = [c for c in TOKEN_COLUMNS if c not in dataset.column_names]
    if missing:
        raise RuntimeError(f"the {split} dataset has no {missing} columns: the trainer did "
                           "not tokenise it, so its reference log-probs cannot be cached")
    start = time.perf_counter()
    accelerator = trainer.accelerator
    # Rank 0 names and reads the entry and tells the others, so that every rank takes the
    # same branch (the compute below is collective) even if their file systems differ.
    found = [None]
    if accelerator.is_main_process:
        key = cache_key(reference, settings, token_digest(dataset))
        values = _load(cache / f"{key}.safetensors", len(dataset))
        found = [(key, values)]
    broadcast_object_list(found, from_process=0)
    key, values = found[0]
    loaded = values is not None
    if loaded:
        chosen, rejected = values
    else:
        chosen, rejected = _compute(trainer, dataset, split, batch_size)
        if accelerator.is_main_process:
            _store(cache / f"{key}.safetensors", chosen, rejected,
                   {"reference": reference, "settings": settings, "split": split})
        accelerator.wait_for_everyone()
    dataset = dataset.add_column("ref_chosen_logps", torch.as_tensor(chosen).float().numpy())
    dataset = dataset.add_column("ref_rejected_logps", torch.as_tensor(rejected).float().numpy())
    return dataset, Entry(split, key, loaded, time.perf_counter() - start, len(dataset))


def _compute(trainer, dataset, split: str, batch_size: int):
    """TRL's reference pass, as its precompute runs it: unshuffled batches of the trainer's
    collator, ``compute_ref_log_probs`` on each (adapter disabled under LoRA), gathered
    across processes."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    loader = trainer.accelerator.prepare(DataLoader(
        dataset.select_columns(list(TOKEN_COLUMNS)), batch_size=batch_size,
        collate_fn=trainer.data_collator, num_workers=trainer.args.dataloader_num_workers,
        pin_memory=trainer.args.dataloader_pin_memory, shuffle=False))
    model = trainer.ref_model or trainer.model
    chosen, rejected = [], []
    for batch in tqdm(loader, desc=f"Reference log-probs of the {split} pairs",
                      disable=bool(os.environ.get("TQDM_DISABLE", ""))):
        c, r = trainer.compute_ref_log_probs(model, batch)
        c, r = trainer.accelerator.gather_for_metrics((c, r))
        chosen.append(c.float().cpu())
        rejected.append(r.float().cpu())
    return torch.cat(chosen), torch.cat(rejected)


def _load(path: Path, rows: int):
    """The stored (chosen, rejected) tensors, or None when absent or unusable."""
    if not path.exists():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        chosen, rejected = tensors["chosen"], tensors["rejected"]
    except (SafetensorError, KeyError, OSError) as e:
        print(f"note: reference cache {path} is unreadable ({e}); computing it again")
        return None
    if chosen.shape != (rows,) or rejected.shape != (rows,):
        print(f"note: reference cache {path} holds {tuple(chosen.shape)} values for {rows} "
              "pairs; computing it again")
        return None
    return chosen, rejected


def _store(path: Path, chosen, rejected, description: dict) -> None:
    from safetensors.torch import save_file

    from alignment.data.io import write_file

    # the description is what the key was made of, readable without align
    metadata = {"description": json.dumps(description, sort_keys=True, default=str)}
    write_file(path, lambda tmp: save_file(
        {"chosen": chosen.contiguous(), "rejected": rejected.contiguous()}, str(tmp),
        metadata=metadata))
