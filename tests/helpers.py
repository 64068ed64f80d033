"""What several test files share: the tiny models' builder and chat templates, the training
data writers, the judge checks, and the corpus of bad inputs. Fixtures stay in
``conftest.py``; test files import helpers from here, never from each other.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
from pathlib import Path

from alignment.cli import main as align

ROOT = Path(__file__).resolve().parent.parent
# sample datasets in the formats peers publish (TRL, UltraFeedback, HelpSteer, Nectar, ...)
DATASETS = ROOT / "tests" / "datasets"

# ------------------------------------------------------------------ tiny models

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# A template that starts with a BOS token, like Llama 2 / Mistral: used to check
# that nothing adds a second BOS when prompts are tokenised.
BOS_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'system' %}{{ '<<SYS>>' + message['content'] + '<</SYS>>' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)


_CORPUS = """
The quick brown fox jumps over the lazy dog. A helpful assistant answers questions
clearly and politely. What is the capital of France? Paris is the capital of France.
Explain photosynthesis in simple terms. Plants turn sunlight, water and carbon dioxide
into sugar and oxygen. Write a short poem about the sea. Give me three tips for sleeping
better. Rate the response from 1 to 5. The answer is correct and concise. Translate
hello into Spanish: hola. Sort the numbers 3 1 2. Python code: def add(a, b): return a + b
User: hi Assistant: hello! How can I help you today? Instruction Input Response
system user assistant chosen rejected prompt score rating 0 1 2 3 4 5 6 7 8 9 10
""".strip()


def build_tiny_model(path: Path, template: str = CHATML_TEMPLATE, *,
                     reward_model: bool = False, seed: int = 0) -> Path:
    """Write a tiny Llama model + locally trained tokenizer to ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (LlamaConfig, LlamaForCausalLM,
                              LlamaForSequenceClassification, PreTrainedTokenizerFast)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS.split("\n") * 4, trainer=trainer)
    chatml = template == CHATML_TEMPLATE
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>" if chatml else "<s>",
        eos_token="<|im_end|>" if chatml else "</s>",
        pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = template
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    if reward_model:
        config.num_labels = 1
        model = LlamaForSequenceClassification(config)
    else:
        model = LlamaForCausalLM(config)
        model.generation_config.pad_token_id = fast.pad_token_id
        model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


# ------------------------------------------------------------------ training data

QUESTIONS = ["What is the capital of France?", "Explain photosynthesis in simple terms.",
             "Write a short poem about the sea.", "Give me three tips for sleeping better.",
             "Translate hello into Spanish.", "Sort the numbers 3 1 2."]


def write_pairs(path: Path, n: int = 24) -> Path:
    """TRL-format pairs where the chosen answer is longer than the rejected one, so the
    untrained model prefers the rejected one by log-probability."""
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": QUESTIONS[i % len(QUESTIONS)],
                                "chosen": "The answer is correct and concise.",
                                "rejected": "dog"}) + "\n")
    return path


def train(model: Path, pairs: Path, out: Path, *extra: str) -> int:
    return align(["dpo", "--dataset", str(pairs), "--model", str(model), "--output-dir", str(out),
                  "--max_steps", "6", "--learning_rate", "5e-3", "--logging_steps", "1",
                  "--eval_steps", "3", "--save_strategy", "no", *extra])


QA = [("What is the capital of France?", "Paris is the capital of France."),
      ("Translate hello into Spanish.", "hola"),
      ("Sort the numbers 3 1 2.", "1 2 3"),
      ("Give me three tips for sleeping better.", "The answer is correct and concise.")]


def write_chats(path: Path, n: int = 16) -> Path:
    """OpenAI-messages rows; every fourth one has a system turn and two exchanges."""
    with open(path, "w") as f:
        for i in range(n):
            q, a = QA[i % len(QA)]
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            if i % 4 == 3:
                msgs = ([{"role": "system", "content": "Answer briefly."}] + msgs
                        + [{"role": "user", "content": "And again?"},
                           {"role": "assistant", "content": a}])
            f.write(json.dumps({"messages": msgs}) + "\n")
    return path


# ------------------------------------------------------------------ generation and judges

PROMPTS = ["hi", "What is the capital of France?", "Explain photosynthesis in simple terms",
           "Sort the numbers 3 1 2", "Write a short poem about the sea. Give me three tips"]


def digit_model(tiny_model: Path, out: Path, logits: dict[str, float]) -> Path:
    """The tiny model rewired so its next-token logits are exactly ``logits`` (0 elsewhere).

    Every token embeds to the all-ones vector and the layers add nothing (zeroed output
    projections), so the final hidden state is all ones at every position; then the
    untied lm_head row of token t is ``logit / hidden`` * ones, giving logit exactly."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, tie_word_embeddings=False)
    hidden = model.config.hidden_size
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for text, logit in logits.items():
            (tid,) = tok(text, add_special_tokens=False).input_ids
            model.lm_head.weight[tid] = logit / hidden
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


CHECKS = [
    ("What is 2+2?", "4", "7"),
    ("What is the capital of France?", "Paris is the capital of France.",
     "Berlin is the capital of France."),
    ("How many legs does a spider have?", "A spider has eight legs.",
     "A spider has three legs."),
    ("Translate 'hello' into Spanish.", "Hola.", "Bonjour."),
    ("What color is the sky on a clear day?", "Blue.", "Green with purple stripes."),
    ("Write the word 'cat' backwards.", "tac", "dog"),
    ("What is 10 times 3?", "30", "13"),
    ("Name a mammal that lives in the ocean.",
     "The blue whale is a mammal that lives in the ocean.", "A shark is a mammal."),
]


# ------------------------------------------------------------------ bad inputs (align data)

COMMANDS = ("inspect", "convert", "pairs")

PREFERENCE = {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}
RANKED = {"prompt": "Name a colour.", "responses": ["red", "blue", "dog"],
          "scores": [5, 4, 1]}
# one value of each JSON kind, to put where a field expects another
WRONG_TYPES = (3, 2.5, True, None, [1, 2], ["text"], {"a": 1}, [{"role": "user"}], [])
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
DEEP = 100_000  # far past any recursion limit


# ----------------------------------------------------------------------------- running

def run_cli(command: str, source: Path, out_dir: Path) -> tuple[int, str]:
    """Exit code and stdout + stderr of `align data COMMAND SOURCE [OUT]`, in process.

    An exception escaping ``main`` is what a user sees as a traceback: it is raised.
    """
    argv = ["data", command, str(source)]
    if command == "convert":
        argv += ["--to", "sft", str(out_dir / "out.jsonl")]
    elif command == "pairs":
        argv += [str(out_dir / "out.jsonl")]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = align(argv)
    return code, buffer.getvalue()


def check_refused(command: str, name: str, content: bytes | dict[str, bytes]) -> None:
    """Write the input (a file, or a folder of files), run the command, check the refusal."""
    with tempfile.TemporaryDirectory() as tmp:
        source = write_input(Path(tmp) / "in", name, content)
        out_dir = Path(tmp) / "out"
        code, output = run_cli(command, source, out_dir)
        assert code == 2, f"exit {code}, output:\n{output[:2000]}"
        assert str(source) in output, output[:2000]
        assert "Traceback" not in output, output[:2000]
        # a message a person reads, not a megabyte of echoed input
        assert len(output) < 20_000, output[:2000]
        assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())


def write_input(folder: Path, name: str, content: bytes | dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
        return path
    for relative, data in content.items():
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        (path / relative).write_bytes(data)
    return path


# ----------------------------------------------------------------------------- encoders

def jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def csv_bytes(rows: list[dict]) -> bytes:
    import csv

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()})
    return text.getvalue().encode()


def parquet_bytes(columns: dict[str, list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def deep(levels: int, kind: str = "list") -> str:
    return "[" * levels + "]" * levels if kind == "list" else '{"a":' * levels + "1" + \
        "}" * levels


def save_to_disk_folder(rows: list[dict]) -> dict[str, bytes]:
    """The files of a `datasets` save_to_disk folder holding ``rows``."""
    import datasets

    with tempfile.TemporaryDirectory() as tmp:
        datasets.disable_progress_bars()
        try:
            datasets.Dataset.from_list(rows).save_to_disk(tmp)
        finally:
            datasets.enable_progress_bars()
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir()}


# ----------------------------------------------------------------------------- corpus

def corpus() -> list[tuple[str, str, bytes | dict[str, bytes]]]:
    """(case, file name, content): one input of every kind of breakage."""
    rng = random.Random(0)
    text = json.dumps({**PREFERENCE, "prompt": "Café au lait? Ça va."}, ensure_ascii=False)
    cases = [
        ("random bytes", "x.jsonl", bytes(rng.randrange(256) for _ in range(512))),
        ("random bytes", "x.json", bytes(rng.randrange(128, 256) for _ in range(512))),
        ("random bytes", "x.csv", b"prompt,chosen\n\xff\xfe\x00garbage\x81\n"),
        ("random bytes", "x.parquet", bytes(rng.randrange(256) for _ in range(512))),
        ("latin-1", "x.jsonl", (text + "\n").encode("latin-1")),
        ("latin-1", "x.csv", "prompt,chosen,rejected\nCafé?,oui,non\n".encode("latin-1")),
        ("utf-16", "x.json", ("[" + text + "]").encode("utf-16")),
        ("utf-16", "x.jsonl", (text + "\n").encode("utf-16")),
        ("truncated", "x.json", json.dumps([PREFERENCE] * 3).encode()[:-7]),
        ("truncated", "x.jsonl", jsonl([PREFERENCE] * 3)[:-9]),
        ("wrong type", "x.jsonl", jsonl([PREFERENCE, {**PREFERENCE, "chosen": 42}])),
        ("wrong type", "x.json", json.dumps([{**PREFERENCE, "prompt": ["a", "b"]}]).encode()),
        ("wrong type", "x.jsonl", jsonl([{**RANKED, "scores": "high"}])),
        ("wrong type", "x.jsonl", jsonl([{**RANKED, "responses": 7}])),
        ("deep", "x.json", deep(DEEP).encode()),
        ("deep", "x.jsonl", (deep(DEEP, "dict") + "\n").encode()),
        ("deep", "x.jsonl", jsonl([{**PREFERENCE, "chosen": json.loads(deep(500))}])),
        ("deep", "x.csv", b"prompt,chosen,rejected\n" + deep(DEEP).encode() + b",a,b\n"),
        ("huge", "x.jsonl", jsonl([{**RANKED, "scores": "9" * 3_000_000}])),
        ("huge", "x.jsonl", jsonl([{**RANKED, "scores": ["x" * 3_000_000, 1, 2]}])),
        ("huge", "x.jsonl", jsonl([{**PREFERENCE, "chosen": {"x": "y" * 3_000_000}}])),
        ("huge", "x.jsonl", jsonl([{**RANKED, "scores": [10 ** 400, 1, 2]}])),
        ("huge", "x.jsonl", b'{"prompt": "a", "responses": ["b", "c"], "scores": [1' +
         b"1" * 5000 + b', 2]}\n'),
        ("huge", "x.json", b'[{"prompt": "a", "responses": ["b", "c"], "scores": [1e999, 2]}]'),
        ("empty", "x.jsonl", b""),
        ("empty", "x.json", b""),
        ("empty", "x.json", b"[]"),
        ("empty", "x.csv", b""),
        ("empty", "x.csv", b"prompt,chosen,rejected\n"),
        ("empty", "x.parquet", b""),
        ("empty", "x.parquet", parquet_bytes({"prompt": [], "chosen": [], "rejected": []})),
        ("mixed", "x.jsonl", json.dumps([PREFERENCE], indent=1).encode()),
        ("mixed", "x.jsonl", json.dumps([PREFERENCE]).encode()),
        ("mixed", "x.json", csv_bytes([PREFERENCE])),
        ("mixed", "x.csv", jsonl([PREFERENCE])),
        ("mixed", "x.parquet", jsonl([PREFERENCE])),
        ("mixed", "x.jsonl", parquet_bytes({"prompt": ["a"]})),
        ("missing", "x.parquet", parquet_bytes({"prompt": ["a"], "chosen": ["b"]})),
        ("missing", "x.parquet", parquet_bytes({"prompt": ["a"], "chosen": ["b"],
                                                 "rejected": [None]})),
        ("missing", "x.csv", b"prompt,chosen,rejected\na,b\n"),
        ("missing", "x.jsonl", jsonl([PREFERENCE, {"prompt": "a", "chosen": "b"}])),
        ("wrong top level", "x.json", b'"a string"'),
        ("wrong top level", "x.json", b"42"),
        ("wrong top level", "x.json", b'{"rows": 3}'),
        ("wrong top level", "x.jsonl", b"[1, 2]\n"),
        ("wrong top level", "x.jsonl", b"null\n"),
    ]
    good = save_to_disk_folder([PREFERENCE, PREFERENCE])
    arrow = next(k for k in good if k.endswith(".arrow"))
    cases += [
        ("save_to_disk", "ds", {**good, arrow: good[arrow][: len(good[arrow]) // 2]}),
        ("save_to_disk", "ds", {**good, arrow: bytes(rng.randrange(256) for _ in range(300))}),
        ("save_to_disk", "ds", {**good, "state.json": b"\xff\xfe not json"}),
        ("save_to_disk", "ds", {**good, "dataset_info.json": b"[1, 2"}),
        ("save_to_disk", "ds", {"dataset_dict.json": b'{"splits": ["train"]}',
                                **{f"train/{k}": v for k, v in good.items()},
                                "train/state.json": b"{"}),
        ("shards", "ds", {"train-0.jsonl": jsonl([PREFERENCE]), "train-1.jsonl": b"\x80\x81"}),
    ]
    return cases


CORPUS = corpus()
