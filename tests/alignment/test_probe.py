"""`align probe`: per-layer features, the grouped split, probes against their control,
the shipped fact set, --pairs, and bad inputs refused with exit 2."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from alignment.cli import main as align
from alignment.probe import FACTS, Examples, hidden_features, pair_examples, read_examples, split

WORDS = ("quick brown fox jumps over lazy dog helpful answers questions clearly politely "
         "plants sunlight water sugar oxygen poem sea tips sleeping").split()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def marked_rows(n: int, seed: int = 0) -> list[dict]:
    """Texts whose first word (`hello` or `Paris`) is the label; the rest is noise."""
    rng = random.Random(seed)
    return [{"text": " ".join([("hello", "Paris")[i % 2],
                               *rng.choices(WORDS, k=rng.randint(3, 7))]),
             "label": i % 2} for i in range(n)]


def test_features_have_one_row_per_text_for_every_layer(tiny_model):
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    encoded = [tok(r["text"]).input_ids for r in marked_rows(7)]
    last = hidden_features(model, tok, encoded, "last", batch_size=4)
    assert last.shape == (model.config.num_hidden_layers + 1, 7, model.config.hidden_size)
    assert last.dtype == np.float32
    # padding in a batch must not move the token read: batched equals one row at a time
    alone = hidden_features(model, tok, encoded, "last", batch_size=1)
    assert np.allclose(last, alone, atol=1e-5)
    # layer 0 is the embedding of the last token itself
    emb = model.get_input_embeddings().weight.detach().numpy()
    assert np.allclose(last[0, 0], emb[encoded[0][-1]], atol=1e-6)
    mean = hidden_features(model, tok, encoded, "mean", batch_size=4)
    assert np.allclose(mean[0, 0], emb[encoded[0]].mean(0), atol=1e-5)
    assert np.allclose(mean, hidden_features(model, tok, encoded, "mean", batch_size=1), atol=1e-5)


def test_a_trivially_encoded_label_is_found_and_its_control_is_not(tiny_model, tmp_path, capsys):
    data = write_jsonl(tmp_path / "marked.jsonl", marked_rows(80))
    out = tmp_path / "probe"
    assert align(["probe", str(data), "--model", str(tiny_model), "--token", "mean",
                  "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "probe.json").read_text())
    layers = result["layers"]
    assert [r["layer"] for r in layers] == [0, 1, 2]  # embeddings + 2 blocks
    assert result["n"] == 80 and result["n_train"] + result["n_test"] == 80
    assert max(r["accuracy"] for r in layers) >= 0.95
    for r in layers:
        assert 0.3 <= r["control_accuracy"] <= 0.7, r
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    assert result["token"] == "mean" and result["dtype"] in ("float32", "bfloat16")
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["probe.json", "probe.png"]  # no temp files
    assert "block 2" in printed and "<- best" in printed


def test_shipped_facts_pair_each_truth_with_one_falsehood():
    examples = read_examples(FACTS)
    by_group = defaultdict(list)
    for text, label, group in zip(examples.texts, examples.labels, examples.groups):
        by_group[group].append((label, text))
    assert 150 <= len(by_group) <= 200
    for group, members in by_group.items():
        assert sorted(label for label, _ in members) == ["0", "1"], group
        true, false = (t for _, t in sorted(members, reverse=True))
        assert true != false and len(set(true.split()) ^ set(false.split())) <= 6, group
    assert len(set(examples.texts)) == len(examples.texts)


def test_split_keeps_groups_whole_stratified_and_seeded():
    examples = read_examples(FACTS)
    train, test = split(examples.labels, examples.groups, 0.3, seed=0)
    assert sorted(train + test) == list(range(len(examples.texts)))
    assert not {examples.groups[i] for i in train} & {examples.groups[i] for i in test}
    assert abs(len(test) / len(examples.texts) - 0.3) < 0.02
    assert Counter(examples.labels[i] for i in test) == {"1": len(test) // 2, "0": len(test) // 2}
    assert split(examples.labels, examples.groups, 0.3, seed=0)[1] == test
    assert split(examples.labels, examples.groups, 0.3, seed=1)[1] != test
    # without groups every row is its own, and the classes keep their proportions
    labels = ["a"] * 30 + ["b"] * 70
    _, held = split(labels, [str(i) for i in range(100)], 0.3, seed=0)
    assert Counter(labels[i] for i in held) == {"a": 9, "b": 21}


PAIRS = [{"prompt": f"Name thing {i}.", "chosen": f"A helpful answer {i}.",
          "rejected": f"dog dog {i}"} for i in range(8)]


def test_pairs_become_chosen_and_rejected_assistant_turns(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    examples = pair_examples(PAIRS[:2], tok)
    assert examples.labels == ["1", "0", "1", "0"] and examples.chat
    assert examples.groups[0] == examples.groups[1] != examples.groups[2]
    assert examples.texts[0] == ("<|im_start|>user\nName thing 0.<|im_end|>\n"
                                 "<|im_start|>assistant\nA helpful answer 0.")
    out = tmp_path / "probe"
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    assert align(["probe", str(data), "--pairs", "--model", str(tiny_model), "-o", str(out)]) == 0
    result = json.loads((out / "probe.json").read_text())
    assert result["pairs"] and result["n"] == 16 and result["classes"] == {"0": 8, "1": 8}
    assert result["n_test"] == 2 * result["groups_test"]  # a pair is never split
    assert len(result["layers"]) == 3


def test_help_names_the_options(capsys):
    assert align(["probe", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--text-field", "--label-field", "--pairs", "--token", "--test-fraction",
                 "--controls", "--output"):
        assert flag in out


def _bad(tmp_path: Path, name: str) -> tuple[list[str], str]:
    rows = marked_rows(12)
    cases = {
        "missing-file": ([str(tmp_path / "nope.jsonl")], "nope.jsonl: no such file"),
        "missing-text": ([write_jsonl(tmp_path / "a.jsonl", rows[:3] + [{"label": 1}] + rows)],
                         "a.jsonl row 4: field `text`: is missing"),
        "other-text-field": ([write_jsonl(tmp_path / "b.jsonl", rows), "--text-field", "claim"],
                             "b.jsonl row 1: field `claim`: is missing"),
        "missing-label": ([write_jsonl(tmp_path / "c.jsonl", rows + [{"text": "hi"}])],
                          "c.jsonl row 13: field `label`: is missing"),
        "non-text": ([write_jsonl(tmp_path / "d.jsonl", rows[:1] + [{"text": 5, "label": 0}])],
                     "d.jsonl row 2: field `text`: expected text, got int"),
        "list-label": ([write_jsonl(tmp_path / "e.jsonl", [{"text": "x", "label": [1]}])],
                       "e.jsonl row 1: field `label`: expected a class label"),
        "one-class": ([write_jsonl(tmp_path / "f.jsonl", [{**r, "label": 1} for r in rows])],
                      "f.jsonl: every row has the label '1'; a probe needs at least two classes"),
        "too-few": ([write_jsonl(tmp_path / "g.jsonl", rows[:4])], "g.jsonl: too few rows (4"),
        "too-few-groups": ([write_jsonl(tmp_path / "h.jsonl", [{**r, "group": str(i % 2)}
                                                               for i, r in enumerate(rows)])],
                           "h.jsonl: too few rows or groups"),
        "pairs-field": ([write_jsonl(tmp_path / "p.jsonl", PAIRS[:3] + [{"prompt": "q",
                                                                          "chosen": 3,
                                                                          "rejected": "b"}]),
                         "--pairs"], "p.jsonl row 4: field `chosen`: expected text"),
        "fraction": ([write_jsonl(tmp_path / "i.jsonl", rows), "--test-fraction", "1.5"],
                     "--test-fraction 1.5 must be between 0 and 1"),
    }
    argv, message = cases[name]
    return [str(a) for a in argv], message


@pytest.mark.parametrize("case", ["missing-file", "missing-text", "other-text-field",
                                  "missing-label", "non-text", "list-label", "one-class",
                                  "too-few", "too-few-groups", "pairs-field", "fraction"])
def test_bad_input_exits_2_naming_the_problem(case, tmp_path, capsys, monkeypatch):
    import alignment.probe

    def no_model(spec):
        raise AssertionError("the model loaded before the data was checked")
    monkeypatch.setattr(alignment.probe, "_load", no_model)
    argv, message = _bad(tmp_path, case)
    assert align(["probe", *argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_rows_without_groups_are_their_own_group(tmp_path):
    examples = read_examples(write_jsonl(tmp_path / "x.jsonl", marked_rows(10)))
    assert isinstance(examples, Examples) and len(set(examples.groups)) == 10
    assert examples.labels[:2] == ["0", "1"]
