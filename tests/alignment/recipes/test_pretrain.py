"""`align pretrain` on the tiny model: documents from text files, folders and tables,
packing without attention across documents, a full and a LoRA run, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.cli import main as align
from alignment.data.texts import read_texts
from alignment.errors import DataError

PROSE = ["Maelle Ashgrove is the winner of the 2031 Orbital Chess Cup. She learned the "
         "game on a research station.", "The Glass Lantern of Vire is kept in a museum "
         "on the coast.\nIt was carved from one block of sea glass.",
         "Tobin Marsh wrote the first atlas of the drowned valleys."]


def write_notes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("\n\n".join(PROSE[:2]) + "\n")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "b.md").write_text(PROSE[2] + "\n")
    (folder / "ignored.json").write_text("[]")  # not a text file: a folder of texts skips it
    return folder


# ---------------------------------------------------------------- reading documents

def test_documents_from_files_paragraphs_folders_and_tables(tmp_path):
    notes = write_notes(tmp_path / "notes")
    files = read_texts(notes)
    assert [d["text"] for d in files] == ["\n\n".join(PROSE[:2]), PROSE[2]]
    paragraphs = read_texts(notes, split="paragraph")
    assert [d["text"] for d in paragraphs] == PROSE
    assert paragraphs[1]["source"].endswith("a.txt:3")  # where the paragraph starts
    table = tmp_path / "docs.jsonl"
    table.write_text("".join(json.dumps({"body": t}) + "\n" for t in PROSE))
    assert [d["text"] for d in read_texts(table, text_field="body")] == PROSE


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", "  \n\n", "holds no text"),
    ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\xff", "not UTF-8"),
    ("rows.jsonl", '{"text": "fine"}\n{"body": "x"}\n', "row 2: field `text`: missing"),
    ("rows2.jsonl", '{"text": "fine"}\n{"text": 3}\n', "row 2: field `text`: must be text"),
    ("rows3.jsonl", '{"text": ""}\n', "row 1: field `text`: empty"),
    ("notes.pdf", "%PDF-1.4", "unsupported file type `.pdf`"),
])
def test_bad_documents_are_errors_naming_file_row_and_field(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message.replace("`", ".").replace("(", ".")):
        read_texts(path)


def test_bad_input_exits_2_before_loading_a_model(tiny_model, tmp_path, capsys):
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"text": "fine"}\n{"content": "x"}\n')
    assert align(["pretrain", "--dataset", str(bad), "--model", str(tiny_model),
                  "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "rows.jsonl row 2: field `text`: missing" in err and "Traceback" not in err
    assert align(["pretrain", "--model", str(tiny_model)]) == 2
    assert "no dataset given" in capsys.readouterr().err
    assert align(["pretrain", "--dataset", str(bad), "--model", str(tiny_model),
                  "--completion_only_loss", "true"]) == 2
    assert "use align sft" in capsys.readouterr().err


# ---------------------------------------------------------------- packing

def test_packed_documents_do_not_attend_across_each_other(tiny_model):
    """What TRL's best-fit packing hands the model (no padding, positions restarting per
    document, no attention mask, no cache: TRL's loss passes ``use_cache=False``) gives
    every document the logits it gets alone: transformers reads the document boundaries
    off the position ids, with sdpa on CPU too."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    docs = [tok(t, add_special_tokens=False).input_ids for t in PROSE]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id,
                                            padding_free=True)(
        [{"input_ids": d} for d in docs])
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    with torch.inference_mode():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits[0]
        start = 0
        for d in docs:
            alone = model(input_ids=torch.tensor([d])).logits[0]
            torch.testing.assert_close(packed[start:start + len(d)], alone, atol=1e-4, rtol=1e-4)
            start += len(d)
        # the check can fail: without the restarting positions the documents do mix
        mixed = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        assert not torch.allclose(mixed[len(docs[0]):len(docs[0]) + len(docs[1])],
                                  model(input_ids=torch.tensor([docs[1]])).logits[0],
                                  atol=1e-4)


# ---------------------------------------------------------------- training

def _mean_nll(model_dir: Path, base: Path, text: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor([AutoTokenizer.from_pretrained(base)(text).input_ids])
    with torch.inference_mode():
        return float(model.eval()(input_ids=ids, labels=ids).loss)


@pytest.mark.parametrize("peft", ["lora", "none"])
def test_pretraining_lowers_the_loss_on_the_texts(tiny_model, tmp_path, capsys, peft):
    notes = write_notes(tmp_path / "notes")
    out = tmp_path / "run"
    assert align(["pretrain", "--dataset", str(notes), "--split", "paragraph",
                  "--model", str(tiny_model), "--output_dir", str(out), "--peft", peft,
                  "--max_steps", "30", "--learning_rate", "1e-2", "--eval_split", "0",
                  "--max_length", "64", "--per_device_train_batch_size", "2",
                  "--logging_steps", "1", "--save_strategy", "no"]) == 0
    printed = capsys.readouterr().out
    assert "align pretrain: 3 documents" in printed and "packed into blocks of 64" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["train_documents"] == 3 and m["train_tokens"] > 30
    assert m["train"]["loss"] < m["train_loss_first"]
    weights = "adapter_model.safetensors" if peft == "lora" else "model.safetensors"
    assert (out / weights).exists() and (out / "README.md").exists()
    assert "| dataset | documents |" in (out / "README.md").read_text()
    before = _mean_nll(tiny_model, tiny_model, PROSE[0])
    after = _mean_nll(out, tiny_model, PROSE[0])
    assert after < before - 0.5  # the text became much more likely


def test_held_out_documents_give_a_perplexity(tiny_model, tmp_path):
    table = tmp_path / "docs.jsonl"
    table.write_text("".join(json.dumps({"text": f"{t} (copy {i})"}) + "\n"
                             for i in range(4) for t in PROSE))
    out = tmp_path / "run"
    assert align(["pretrain", "--dataset", str(table), "--model", str(tiny_model),
                  "--output_dir", str(out), "--max_steps", "4", "--eval_split", "0.25",
                  "--packing", "false", "--save_strategy", "no"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["eval_documents"] == 3 and m["train_documents"] == 9
    assert m["eval_perplexity"] == pytest.approx(2.718281828 ** m["eval"]["loss"], rel=1e-6)
