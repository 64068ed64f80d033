"""`align dpo`'s reference log-probs cache, on the tiny model.

Runs are pinned to fp32 (``--bf16 false``) so the comparisons can be tight: two fp32
reference passes over the same tokens agree to rounding, a few 1e-6 on sums of a few
dozen token log-probs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from tests.helpers import ROOT

FP32_TOL = 1e-4
ANSWERS = ["Paris is the capital of France.", "Plants turn sunlight into sugar.",
           "The sea is blue and wide.", "Sleep at the same time every day.",
           "hola", "1 2 3"]
QUESTIONS = ["What is the capital of France?", "Explain photosynthesis in simple terms.",
             "Write a short poem about the sea.", "Give me three tips for sleeping better.",
             "Translate hello into Spanish.", "Sort the numbers 3 1 2."]


def write_pairs(path: Path, n: int = 12, rejected: str = "dog") -> Path:
    """Pairs that differ from row to row, so a row out of place would show."""
    rows = [{"prompt": QUESTIONS[i % 6], "chosen": ANSWERS[(i + i // 6) % 6],
             "rejected": f"{rejected} {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dpo(model: Path, pairs: Path, out: Path, cache: Path | str, *extra: str) -> dict:
    code = align(["dpo", "--dataset", str(pairs), "--model", str(model), "--output_dir", str(out),
                  "--max_steps", "2", "--logging_steps", "1", "--eval_split", "0",
                  "--eval_strategy", "no", "--save_strategy", "no", "--bf16", "false",
                  "--reference_cache", str(cache), *extra])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


def stored(cache: Path, key: str):
    from safetensors.torch import load_file

    tensors = load_file(cache / f"{key}.safetensors")
    return tensors["chosen"], tensors["rejected"]


def independent_logps(model_path: Path, pairs: Path):
    """log p(answer | prompt) summed over the answer's tokens, with plain transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()

    def ids(messages, **kw):
        return tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)["input_ids"]

    def logp(prompt, answer):
        user = [{"role": "user", "content": prompt}]
        prefix = ids(user, add_generation_prompt=True)
        full = ids(user + [{"role": "assistant", "content": answer}])
        assert full[:len(prefix)] == prefix
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0, :-1].float()
        per_token = logits.log_softmax(-1).gather(1, torch.tensor(full[1:])[:, None])[:, 0]
        return per_token[len(prefix) - 1:].sum().item()

    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    return ([logp(r["prompt"], r["chosen"]) for r in rows],
            [logp(r["prompt"], r["rejected"]) for r in rows])


@pytest.fixture(scope="module")
def first(tiny_model, tmp_path_factory):
    """One run that fills a cache folder, and its pairs."""
    root = tmp_path_factory.mktemp("refcache")
    pairs = write_pairs(root / "pairs.jsonl")
    cache = root / "cache"
    metrics = dpo(tiny_model, pairs, root / "first", cache)
    return {"root": root, "pairs": pairs, "cache": cache, "metrics": metrics}


def test_first_run_stores_the_reference_log_probs_of_the_base(first, tiny_model):
    entry = first["metrics"]["reference_cache"]["train"]
    assert entry["loaded"] is False and entry["pairs"] == 12
    chosen, rejected = stored(first["cache"], entry["key"])
    want_chosen, want_rejected = independent_logps(tiny_model, first["pairs"])
    # row by row, in the order of the pairs file (--eval_split 0 keeps it)
    assert chosen.tolist() == pytest.approx(want_chosen, abs=FP32_TOL)
    assert rejected.tolist() == pytest.approx(want_rejected, abs=FP32_TOL)
    assert len(set(chosen.tolist())) > 1  # the rows really differ
    # the run trained in TRL's precompute mode, and says so in its config
    assert first["metrics"]["config"]["DPOConfig"]["precompute_ref_log_probs"] is True


def test_another_beta_and_loss_type_load_the_cache(first, tiny_model, capsys):
    key = first["metrics"]["reference_cache"]["train"]["key"]
    path = first["cache"] / f"{key}.safetensors"
    before = path.stat().st_mtime_ns
    capsys.readouterr()
    metrics = dpo(tiny_model, first["pairs"], first["root"] / "ipo", first["cache"],
                  "--beta", "0.5", "--loss_type", "ipo")
    out = capsys.readouterr().out
    assert f"reference log-probs: loaded from cache {key}" in out
    assert metrics["reference_cache"]["train"] == {**metrics["reference_cache"]["train"],
                                                   "key": key, "loaded": True}
    assert path.stat().st_mtime_ns == before  # read, not rewritten
    assert metrics["config"]["DPOConfig"]["beta"] == 0.5


def test_cached_values_match_a_fresh_computation(first, tiny_model):
    import torch

    key = first["metrics"]["reference_cache"]["train"]["key"]
    fresh_cache = first["root"] / "fresh-cache"
    metrics = dpo(tiny_model, first["pairs"], first["root"] / "fresh", fresh_cache,
                  "--beta", "0.3")
    entry = metrics["reference_cache"]["train"]
    # the key does not depend on where the cache lives, and the new folder was empty
    assert entry["key"] == key and entry["loaded"] is False
    for cached, fresh in zip(stored(first["cache"], key), stored(fresh_cache, key)):
        assert torch.allclose(cached, fresh, atol=FP32_TOL, rtol=0)


def test_changed_data_or_max_length_miss(first, tiny_model, tmp_path):
    import torch

    key = first["metrics"]["reference_cache"]["train"]["key"]
    other = write_pairs(tmp_path / "other.jsonl", rejected="cat")
    changed = dpo(tiny_model, other, tmp_path / "data", first["cache"])["reference_cache"]["train"]
    assert changed["loaded"] is False and changed["key"] != key

    # 36 tokens keep every prompt (at most 33) and cut the longer answers
    short = dpo(tiny_model, first["pairs"], tmp_path / "short", first["cache"],
                "--max_length", "36")["reference_cache"]["train"]
    assert short["loaded"] is False and short["key"] not in (key, changed["key"])
    # the new entry holds what truncation changed: fewer answer tokens, so sums closer to 0
    full_chosen, _ = stored(first["cache"], key)
    short_chosen, _ = stored(first["cache"], short["key"])
    assert short_chosen.shape == full_chosen.shape
    assert bool((short_chosen >= full_chosen - FP32_TOL).all())
    assert bool((short_chosen > full_chosen + 1).any())


def test_cached_run_has_the_uncached_runs_first_loss(first, tiny_model, tmp_path):
    cached = dpo(tiny_model, first["pairs"], tmp_path / "cached", first["cache"])
    assert cached["reference_cache"]["train"]["loaded"] is True
    uncached = dpo(tiny_model, first["pairs"], tmp_path / "uncached", "off")
    assert "reference_cache" not in uncached
    assert uncached["config"]["DPOConfig"]["precompute_ref_log_probs"] is False

    def first_loss(out: Path) -> float:
        state = json.loads((out / "trainer_state.json").read_text())
        return next(e["loss"] for e in state["log_history"] if "loss" in e)

    # the policy starts as the reference, so a wrong reference value would move the loss
    # off log(2) and the rewards off zero
    assert first_loss(tmp_path / "cached") == pytest.approx(first_loss(tmp_path / "uncached"),
                                                            abs=1e-5)


def test_default_folder_is_under_align_home_and_off_writes_nothing(tiny_model, tmp_path):
    import os

    home = Path(os.environ["ALIGN_HOME"])
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=4)
    dpo(tiny_model, pairs, tmp_path / "off", "off")
    assert not (home / "reference").exists()
    key = dpo(tiny_model, pairs, tmp_path / "on", "on")["reference_cache"]["train"]["key"]
    assert sorted(p.name for p in (home / "reference").iterdir()) == [f"{key}.safetensors"]


def test_resumed_run_loads_the_cache(tiny_model, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=8)
    cache, out = tmp_path / "cache", tmp_path / "run"
    common = ["dpo", "--dataset", str(pairs), "--model", str(tiny_model), "--output_dir", str(out),
              "--eval_split", "0", "--eval_strategy", "no", "--bf16", "false",
              "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1",
              "--save_strategy", "steps", "--save_steps", "2", "--reference_cache", str(cache)]
    assert align([*common, "--max_steps", "2"]) == 0
    key = json.loads((out / "metrics.json").read_text())["reference_cache"]["train"]["key"]
    capsys.readouterr()
    assert align([*common, "--max_steps", "4", "--resume_from_checkpoint", "latest"]) == 0
    assert f"loaded from cache {key}" in capsys.readouterr().out
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4


def test_unreadable_entry_is_computed_again(first, tiny_model, tmp_path, capsys):
    key = first["metrics"]["reference_cache"]["train"]["key"]
    cache = tmp_path / "cache"
    cache.mkdir()
    good = first["cache"] / f"{key}.safetensors"
    (cache / good.name).write_bytes(good.read_bytes()[:40])  # a torn file, as a crash leaves
    metrics = dpo(tiny_model, first["pairs"], tmp_path / "run", cache)
    assert "unreadable" in capsys.readouterr().out
    entry = metrics["reference_cache"]["train"]
    assert entry["key"] == key and entry["loaded"] is False
    assert stored(cache, key)[0].tolist() == pytest.approx(stored(first["cache"], key)[0].tolist(),
                                                           abs=FP32_TOL)
    # replaced in one rename: no temporary file is left behind
    assert [p.name for p in cache.iterdir()] == [good.name]


def test_a_file_as_cache_folder_is_refused(tiny_model, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=4)
    not_a_folder = tmp_path / "cache.txt"
    not_a_folder.write_text("x")
    code = align(["dpo", "--dataset", str(pairs), "--model", str(tiny_model),
                  "--reference_cache", str(not_a_folder)])
    assert code == 2 and "cache.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_run_shares_one_entry(tiny_model, tmp_path):
    """Under DDP rank 0 names the entry for both ranks; the second launch loads it."""
    import os
    import subprocess
    import sys

    root = ROOT
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=12)
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    logs = []
    for beta in ("0.1", "0.5"):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(root / "alignment" / "configs" / "accelerate" / "ddp.yaml"),
               "--num_processes", "2", "-m", "alignment.cli", "dpo",
               "--config", str(root / "alignment" / "recipes" / "tiny_smoke.yaml"),
               "--model", str(tiny_model), "--dataset", str(pairs),
               "--output_dir", str(tmp_path / f"run-{beta}"), "--beta", beta,
               "--reference_cache", str(cache)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        logs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, logs[-1][-4000:]
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".safetensors"
    key = entries[0].stem
    # both ranks computed their half and agreed on one key, then both loaded it
    assert logs[0].count(f"cached as {key}") == 2, logs[0][-4000:]
    assert logs[1].count(f"loaded from cache {key}") == 2, logs[1][-4000:]
    metrics = json.loads((tmp_path / "run-0.1" / "metrics.json").read_text())
    assert metrics["reference_cache"]["train"]["pairs"] == 12  # gathered, no duplicates
    assert stored(cache, key)[0].shape == (12,)
