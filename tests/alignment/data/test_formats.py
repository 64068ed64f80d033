"""Format detection and conversion of every published shape, with exact expected rows."""

from __future__ import annotations

import json

import pytest

from alignment.data import (FORMATS, convert, detect_format, load_kto, load_mixture,
                            load_preferences, load_ranked, load_sft, prompt_id, read_rows,
                            validate_rows, write_rows)
from alignment.errors import DataError
from tests.helpers import DATASETS


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def bot(text: str) -> dict:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict:
    return {"role": "system", "content": text}


@pytest.mark.parametrize("name,fmt", [
    ("alpaca.json", "alpaca"), ("alpaca.csv", "alpaca"), ("sharegpt.jsonl", "sharegpt"),
    ("openai_messages.jsonl", "openai"), ("hh_rlhf.jsonl", "hh-rlhf"),
    ("ultrafeedback.jsonl", "ultrafeedback"),
    ("ultrafeedback_binarized.jsonl", "ultrafeedback-binarized"),
    ("nectar.jsonl", "nectar"), ("helpsteer.jsonl", "helpsteer"),
    ("openorca.jsonl", "openorca"), ("dolly.jsonl", "dolly"),
    ("trl_preference.jsonl", "trl-preference"),
    ("trl_preference_conversational.jsonl", "trl-preference"),
    ("trl_prompt_completion.jsonl", "trl-prompt-completion"), ("trl_kto.jsonl", "trl-kto"),
    ("align_ranked.jsonl", "align-ranked"),
])
def test_detect_format(name, fmt):
    assert detect_format(read_rows(DATASETS / name)) == fmt


def test_unknown_shape_lists_every_format():
    with pytest.raises(DataError) as e:
        detect_format([{"text": "hi", "label": 1}], "x.jsonl")
    message = str(e.value)
    assert message.startswith("x.jsonl row 1: unknown dataset shape: columns ['label', 'text']")
    for name, columns in FORMATS.items():
        assert f"{name}" in message and ", ".join(columns) in message


# --------------------------------------------------------------------------- sft

def test_alpaca_to_sft():
    assert convert(read_rows(DATASETS / "alpaca.json"), "sft") == [
        {"messages": [user("Give three tips for staying healthy."),
                      bot("1. Eat a balanced diet.\n2. Exercise regularly.\n3. Sleep well.")]},
        {"messages": [user("Translate the sentence into Spanish.\n\nHello, how are you?"),
                      bot("Hola, ¿cómo estás?")]},
    ]


def test_sharegpt_to_sft():
    assert convert(read_rows(DATASETS / "sharegpt.jsonl"), "sft") == [
        {"messages": [system("You are a helpful assistant."),
                      user("What is the capital of France?"), bot("Paris."),
                      user("And of Spain?"), bot("Madrid.")], "id": "sg-1"},
        {"messages": [user("Write a haiku about rain."),
                      bot("Soft rain on the roof\nthe garden drinks in silence\nclouds move on at dusk")],
         "id": "sg-2"},
    ]


def test_openai_messages_to_sft_joins_text_parts():
    assert convert(read_rows(DATASETS / "openai_messages.jsonl"), "sft") == [
        {"messages": [system("Answer briefly."), user("2 + 2?"), bot("4")]},
        {"messages": [user("Name a colour."), bot("Blue.")]},
    ]


def test_openorca_to_sft_drops_empty_system_prompt():
    assert convert(read_rows(DATASETS / "openorca.jsonl"), "sft") == [
        {"messages": [system("You are an AI assistant. Explain your answer."),
                      user("Is the sky blue on a clear day?"),
                      bot("Yes: air scatters blue light more than red.")], "id": "niv.242684"},
        {"messages": [user("Complete: 2, 4, 6, ..."), bot("8")], "id": "flan.1"},
    ]


def test_dolly_to_sft_keeps_category():
    assert convert(read_rows(DATASETS / "dolly.jsonl"), "sft") == [
        {"messages": [user("When did the first person walk on the Moon?\n\n"
                           "Apollo 11 landed on the Moon on July 20, 1969."),
                      bot("July 20, 1969.")], "category": "closed_qa"},
        {"messages": [user("Suggest a name for a bakery."), bot("Rise and Shine.")],
         "category": "brainstorming"},
    ]


def test_prompt_completion_to_sft():
    assert convert(read_rows(DATASETS / "trl_prompt_completion.jsonl"), "sft") == [
        {"messages": [user("The capital of Italy is"), bot(" Rome.")]}]


# --------------------------------------------------------------------------- preference

def test_hh_rlhf_to_preference_splits_shared_prompt_and_drops_identical_pairs():
    stats: dict = {}
    rows = convert(read_rows(DATASETS / "hh_rlhf.jsonl"), "preference", stats=stats)
    assert rows == [
        {"prompt": [user("What are some good vegetables to grow in spring?")],
         "chosen": [bot("Peas, lettuce and radishes grow well in cool spring weather.")],
         "rejected": [bot("I don't know.")]},
        {"prompt": [user("Can you help me with my essay?"), bot("Of course. What is it about?"),
                    user("Climate change.")],
         "chosen": [bot("Start with one clear claim, then support it with evidence.")],
         "rejected": [bot("Write it yourself.")]},
    ]
    assert stats["identical_pairs_dropped"] == 1


def test_ultrafeedback_binarized_to_conversational_preference():
    assert convert(read_rows(DATASETS / "ultrafeedback_binarized.jsonl"), "preference") == [
        {"prompt": [user("How many legs does a spider have?")],
         "chosen": [bot("A spider has eight legs.")], "rejected": [bot("Six.")],
         "id": "a1b2", "score_chosen": 9.0, "score_rejected": 3.5}]


def test_trl_preferences_pass_through():
    assert convert(read_rows(DATASETS / "trl_preference.jsonl"), "preference") == read_rows(
        DATASETS / "trl_preference.jsonl")
    conv = read_rows(DATASETS / "trl_preference_conversational.jsonl")
    assert convert(conv, "preference") == conv


def test_preference_to_kto_and_sft():
    rows = read_rows(DATASETS / "trl_preference.jsonl")
    assert convert(rows, "kto") == [
        {"prompt": "The sky is", "completion": " blue.", "label": True},
        {"prompt": "The sky is", "completion": " green.", "label": False},
        {"prompt": "Water boils at", "completion": " 100 degrees Celsius at sea level.",
         "label": True},
        {"prompt": "Water boils at", "completion": " 50 degrees.", "label": False},
    ]
    assert convert(rows, "sft")[0] == {"messages": [user("The sky is"), bot(" blue.")]}


def test_kto_passes_through_and_accepts_csv_style_labels():
    assert convert(read_rows(DATASETS / "trl_kto.jsonl"), "kto") == read_rows(DATASETS / "trl_kto.jsonl")
    assert convert([{"prompt": "p", "completion": "c", "label": "false"}], "kto") == [
        {"prompt": "p", "completion": "c", "label": False}]


# --------------------------------------------------------------------------- ranked

def test_ultrafeedback_raw_to_ranked():
    (row,) = convert(read_rows(DATASETS / "ultrafeedback.jsonl"), "ranked")
    prompt = "Name a prime number greater than 10."
    assert row["id"] == prompt_id(prompt) and row["prompt"] == prompt
    assert row["responses"] == ["11 is a prime number greater than 10.", "12 is prime.", "13."]
    assert row["models"] == ["gpt-4", "falcon-40b-instruct", "alpaca-7b"]
    # overall_score when given; otherwise the mean of the aspect ratings, N/A left out
    assert row["scores"] == [9.0, 2.0, 4.0]
    assert row["ratings"] == [
        {"instruction_following": 5.0, "honesty": 5.0, "truthfulness": 5.0, "helpfulness": 4.0},
        {"instruction_following": 3.0, "honesty": None, "truthfulness": 1.0, "helpfulness": 1.0},
        {"instruction_following": 4.0, "honesty": None, "truthfulness": 5.0, "helpfulness": 3.0},
    ]
    assert row["rationales"][:2] == ["Correct and concise.", "12 is divisible by 2."]
    assert row["rationales"][2] == ("instruction_following: Terse.\nhonesty: Not applicable.\n"
                                    "truthfulness: Correct.\nhelpfulness: Correct but bare.")
    assert json.loads(row["judge_raw"][1])["annotations"]["honesty"]["Rating"] == "N/A"
    assert row["source"] == "evol_instruct" and row["judge"] == "ultrafeedback (gpt-4)"


def test_ultrafeedback_raw_to_preference():
    assert convert(read_rows(DATASETS / "ultrafeedback.jsonl"), "preference") == [
        {"id": prompt_id("Name a prime number greater than 10."),
         "prompt": "Name a prime number greater than 10.",
         "chosen": "11 is a prime number greater than 10.", "rejected": "12 is prime.",
         "score_chosen": 9.0, "score_rejected": 2.0}]


def test_nectar_to_ranked_scores_from_ranks():
    (row,) = convert(read_rows(DATASETS / "nectar.jsonl"), "ranked")
    assert row["prompt"] == [user("Suggest a name for a pet turtle.")]
    assert row["responses"] == ["Shelly", "Sir Crawls-a-Lot, a playful name for a slow friend.",
                                "Turtle."]
    assert row["ranks"] == [2, 1, 3] and row["scores"] == [2.0, 3.0, 1.0]
    assert row["models"] == ["gpt-3.5-turbo", "gpt-4", "llama-2-7b-chat"]
    (pair,) = convert([read_rows(DATASETS / "nectar.jsonl")[0]], "preference")
    assert pair["prompt"] == [user("Suggest a name for a pet turtle.")]
    assert pair["chosen"] == [bot("Sir Crawls-a-Lot, a playful name for a slow friend.")]
    assert pair["rejected"] == [bot("Turtle.")]


def test_helpsteer_grouped_by_prompt():
    stats: dict = {}
    (row,) = convert(read_rows(DATASETS / "helpsteer.jsonl"), "ranked", stats=stats)
    assert row["prompt"] == "Explain what a CPU does."
    assert row["scores"] == [2.0, 4.0]
    assert row["ratings"][1] == {"helpfulness": 4.0, "correctness": 4.0, "coherence": 4.0,
                                 "complexity": 2.0, "verbosity": 2.0}
    assert stats["single_response_prompts"] == 1
    (weighted,) = convert(read_rows(DATASETS / "helpsteer.jsonl"), "ranked",
                          helpsteer_weights={"helpfulness": 1.0, "verbosity": -0.5})
    assert weighted["scores"] == [2.0, 3.0]


def test_ranked_to_sft_takes_best_response():
    assert convert(read_rows(DATASETS / "align_ranked.jsonl"), "sft") == [
        {"id": "p1", "messages": [user("Name a fruit."), bot("Banana, a yellow fruit.")]},
        {"id": "p2", "messages": [user("Say yes."), bot("Yes.")]},
    ]


def test_preference_to_ranked():
    assert convert(read_rows(DATASETS / "ultrafeedback_binarized.jsonl"), "ranked") == [
        {"id": "a1b2", "prompt": [user("How many legs does a spider have?")],
         "responses": ["A spider has eight legs.", "Six."], "models": ["unknown", "unknown"],
         "scores": [9.0, 3.5], "judge": "pairwise preference",
         "judge_raw": ["chosen", "rejected"]}]


def test_sft_cannot_become_preference():
    with pytest.raises(DataError, match="cannot convert `alpaca` \\(sft\\) rows to `preference`"):
        convert(read_rows(DATASETS / "alpaca.json"), "preference")


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("rows,to,row,field,pattern", [
    ([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": None}], "sft",
     2, "output", "is missing"),
    ([{"instruction": "a", "output": 3}], "sft", 1, "output", "expected text, got int"),
    ([{"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "x"}]}],
     "sft", 1, "conversations[1].from", "unknown role 'robot'"),
    ([{"messages": "hello"}], "sft", 1, "messages", "expected a non-empty list of messages"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "sft", 1, "messages",
     "no non-empty assistant turn"),
    ([{"chosen": "Human: hi", "rejected": "hello there"}], "preference", 1, "rejected",
     "text before the first"),
    ([{"prompt": "p", "chosen": "", "rejected": "r"}], "preference", 1, "chosen", "is empty"),
    ([{"prompt": "p", "completion": "c", "label": "maybe"}], "kto", 1, "label",
     "expected true/false"),
    ([{"prompt": "p", "responses": ["a", "b"], "scores": [1, "high"]}], "ranked", 1,
     "scores[1]", "expected a number or null, got 'high'"),
    ([{"prompt": "p", "responses": ["a"], "scores": [1]}], "ranked", 1, "responses",
     "at least 2 responses"),
    ([{"instruction": "p", "completions": [{"model": "m", "response": "r", "annotations":
      {"honesty": {"Rating": "five"}}}]}], "ranked", 1,
     "completions[0].annotations.honesty.Rating", "expected a number or null"),
    ([{"prompt": "\n\nHuman: hi\n\nAssistant:", "answers": [{"model": "m", "rank": 1}]}],
     "ranked", 1, "answers[0].answer", "is missing or not text"),
])
def test_bad_rows_name_row_and_field(rows, to, row, field, pattern):
    with pytest.raises(DataError, match=pattern) as e:
        convert(rows, to, path="in.jsonl")
    assert (e.value.path, e.value.row, e.value.field) == ("in.jsonl", row, field)
    assert str(e.value).startswith(f"in.jsonl row {row}: field `{field}`: ")


def test_validate_rows_catches_mixed_shapes():
    with pytest.raises(DataError, match="row 1: field `chosen`: mixes text and conversation"):
        validate_rows([{"prompt": [user("q")], "chosen": "a", "rejected": [bot("b")]}],
                      "preference", "p.jsonl")


# --------------------------------------------------------------------------- loaders

def test_loaders_return_datasets_with_training_columns(tmp_path):
    sft = load_sft(DATASETS / "sharegpt.jsonl")
    assert sft.column_names == ["messages"] and len(sft) == 2
    prefs = load_preferences(DATASETS / "align_ranked.jsonl", strategy="all")
    assert prefs.column_names == ["prompt", "chosen", "rejected"]
    assert list(prefs["chosen"]) == ["Apple.", "Banana, a yellow fruit.",
                                     "Banana, a yellow fruit."]
    kto = load_kto(DATASETS / "hh_rlhf.jsonl")
    assert list(kto["label"]) == [True, False, True, False]
    assert load_ranked(DATASETS / "nectar.jsonl")[0]["ranks"] == [2, 1, 3]
    # the same data read back from parquet converts identically
    write_rows(read_rows(DATASETS / "ultrafeedback.jsonl"), tmp_path / "uf.parquet")
    assert (load_preferences(tmp_path / "uf.parquet").to_list()
            == load_preferences(DATASETS / "ultrafeedback.jsonl").to_list())


def test_loader_with_no_usable_rows():
    with pytest.raises(DataError, match="no usable `preference` rows"):
        load_preferences(f"{DATASETS / 'align_ranked.jsonl'}", margin=10)


def test_mixture_samples_by_fraction_and_count(tmp_path):
    a = write_rows([{"prompt": f"a{i}", "chosen": "x", "rejected": "y"} for i in range(10)],
                   tmp_path / "a.jsonl")
    b = write_rows([{"prompt": f"b{i}", "chosen": "x", "rejected": "y"} for i in range(10)],
                   tmp_path / "b.parquet")
    mix = load_mixture([f"{a}@0.5", f"{b}@3"], "preference", seed=1)
    prompts = list(mix["prompt"])
    assert len(prompts) == 8 and len(set(prompts)) == 8
    assert sum(p.startswith("a") for p in prompts) == 5
    assert load_mixture([f"{a}@0.5", f"{b}@3"], "preference", seed=1)["prompt"] == prompts
    assert len(load_mixture([str(a), str(b)], "preference")) == 20
    with pytest.raises(DataError, match="asked for 11 rows"):
        load_mixture([f"{a}@11"], "preference")
    with pytest.raises(DataError, match="do not share one shape"):
        load_mixture([str(a), str(DATASETS / "trl_preference_conversational.jsonl")], "preference")


def test_prompt_id_is_stable():
    assert prompt_id("hello") == "aaf4c61ddcc5e8a2"
    assert prompt_id([user("hello")]) == prompt_id([{"content": "hello", "role": "user"}])


def test_published_rankings_with_one_completion_are_dropped_and_counted():
    rows = read_rows(DATASETS / "ultrafeedback.jsonl")
    short = dict(rows[0], completions=rows[0]["completions"][:1])
    stats: dict = {}
    assert len(convert([rows[0], short], "ranked", stats=stats)) == 1
    assert stats["rows_under_2_responses_dropped"] == 1


def test_implicit_prompt_conversations_split_like_hh_rlhf():
    rows = [{"chosen": [user("Hi"), bot("Hello! How can I help?")],
             "rejected": [user("Hi"), bot("What.")]}]
    assert detect_format(rows) == "hh-rlhf"
    assert convert(rows, "preference") == [
        {"prompt": [user("Hi")], "chosen": [bot("Hello! How can I help?")],
         "rejected": [bot("What.")]}]
