"""Magpie: the pre-query prompt read off the chat template, the instruction filters and
their counts in the card, the raw-completion route of the local server, and (slow) a few
instructions from the bundled SmolLM2."""

import json

import pytest

from alignment.data import read_card, read_rows
from alignment.errors import ConfigError
from pipelines.magpie import filter_instructions, special_tokens, template_leak

CHATML_USER = "<|im_start|>user\n"


def _generate(*argv: str) -> int:
    from pipelines.cli import main

    return main(list(argv))


def _task(llm):
    from pipelines.magpie import MagpieInstructions

    task = MagpieInstructions(llm=llm, only_instruction=True)
    task.load()
    return task


# ---------------------------------------------------------------- the pre-query prompt

def test_pre_query_prompt_is_the_templates_user_turn_prefix(tiny_model):
    from pipelines.llms import MagpieTransformersLLM

    llm = MagpieTransformersLLM(model=str(tiny_model), seed=0)
    assert llm.magpie_pre_query_template == CHATML_USER
    task = _task(llm)  # Magpie switches the LLM to Magpie prompts
    assert task.llm.use_magpie_template
    tok = llm.tokenizer
    assert tok.decode(llm.prepare_input([])) == CHATML_USER
    system = [{"role": "system", "content": "You write math questions."}]
    assert tok.decode(llm.prepare_input(system)) == \
        "<|im_start|>system\nYou write math questions.<|im_end|>\n" + CHATML_USER
    # a pending user turn is answered as usual: the assistant's generation prompt
    user = [{"role": "user", "content": "Hi"}]
    assert tok.decode(llm.prepare_input(user)).endswith("<|im_start|>assistant\n")


def test_pre_query_prompt_follows_other_templates(tiny_bos_model):
    from transformers import AutoTokenizer

    from pipelines.llms import pre_query_prompt

    tok = AutoTokenizer.from_pretrained(tiny_bos_model)
    assert pre_query_prompt(tok) == "<s>[INST] "
    history = [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"}]
    assert pre_query_prompt(tok, history) == "<s>[INST] A [/INST] B</s>[INST] "
    tok.chat_template = None
    with pytest.raises(ConfigError, match="chat template"):
        pre_query_prompt(tok)


def test_instructions_are_seeded_per_batch_and_say_how_they_ended(varied_model):
    from pipelines.llms import make_llm

    task = _task(make_llm(str(varied_model), magpie=True, max_new_tokens=6,
                          temperature=1.0, do_sample=True, seed=0))
    first = next(task.process([{"seed": 1}, {"seed": 2}, {"seed": 3}]))
    again = next(task.process([{"seed": 1}, {"seed": 2}, {"seed": 3}]))
    other = next(task.process([{"seed": 4}, {"seed": 5}, {"seed": 6}]))
    texts = [r["instruction"] for r in first]
    assert texts == [r["instruction"] for r in again]
    assert texts != [r["instruction"] for r in other]
    assert all(r["instruction_finish_reason"] in ("stop", "length") for r in first)
    assert {r["seed"] for r in first} == {1, 2, 3}  # the input columns travel along


# ---------------------------------------------------------------- filters

def test_filters_catch_empty_repeated_and_leaking_instructions(tiny_model):
    from transformers import AutoTokenizer

    special = special_tokens(AutoTokenizer.from_pretrained(tiny_model))
    assert "<|im_start|>" in special and "<|endoftext|>" in special
    good = ["What is the capital of France?",
            "Assistant managers at a hotel ask: how should night shifts be planned?",
            "Write a short poem about the sea, in the voice of a lighthouse keeper who "
            "has watched the same stretch of coast for forty years.",
            "List three tips for sleeping better."]
    crafted = [
        ("", "stop"), ("   \n", "stop"),                                  # empty
        ("<|im_start|>assistant\nSure, here you go.", "stop"),            # leaks
        ("assistant\nHere is a question.", "stop"),
        ("User: what is the boiling point of water?", "stop"),
        ("What is 2 + 2?\nassistant\nFour.", "stop"),
        ("Tell me a joke<|endoftext|>", "stop"),
        ("[INST] Summarise this [/INST]", "stop"),
        (good[0], "stop"), (good[1], "stop"), (good[2], "stop"), (good[3], "stop"),
        ("what is the capital of france", "stop"),                        # exact repeat
        ("Write a short poem about the sea, in the voice of a lighthouse keeper who "
         "has watched the same stretch of coast for forty-one years.", "stop"),  # near
        ("Describe the history of the printing press and its", "length"),  # cut off
    ]
    rows = [{"instruction": t, "instruction_finish_reason": r} for t, r in crafted]
    kept, counts = filter_instructions(rows, special, near_threshold=0.7)
    assert [r["instruction"] for r in kept] == good
    assert counts == {"empty": 2, "template_leak": 6, "truncated": 1,
                      "exact_duplicates": 1, "near_duplicates": 1}
    kept, counts = filter_instructions(rows, special, near_threshold=None,
                                       keep_truncated=True)
    assert counts["near_duplicates"] == 0 and counts["truncated"] == 0 and len(kept) == 6


def test_role_words_inside_an_instruction_are_not_leaks():
    assert not template_leak("How does a user interface differ from a voice assistant?")
    assert not template_leak("System design: how would you shard a database?")
    assert template_leak("system\nYou are a bot.")
    assert template_leak("Hi <|eot_id|>")


def test_dry_run_counts_every_filter_in_the_card(tmp_path, capsys):
    from pipelines import runner
    from pipelines.fake import _MAGPIE_FAILURES

    out = tmp_path / "magpie.jsonl"
    assert _generate("magpie", "--dry-run", "--num-instructions", "40", "--max-rounds", "1",
                     "-o", str(out)) == 0
    printed = capsys.readouterr().out
    assert repr(CHATML_USER) in printed and "asked for 40 instructions" in printed
    assert "--max-rounds 1 reached" in printed
    card = read_card(out)
    counts = card["instruction_filters"]
    assert card["pre_query_template"] == CHATML_USER and card["requests"] == 40
    assert card["kept_instructions"] + sum(counts.values()) == 40
    # what the fake teacher wrote, read back from the stage's journal
    journal = next((runner.cache_root() / "align-magpie-queries").glob(
        "journals/*/" + runner.JOURNAL_NAME))
    written = [json.loads(line)["instruction"] for line in journal.open()]
    assert len(written) == 40
    crafted = sum(written.count(t) for t in _MAGPIE_FAILURES)
    assert crafted == 10  # one request in four
    assert counts["empty"] == written.count("")
    assert counts["template_leak"] == sum(written.count(t) for t in _MAGPIE_FAILURES[1:3])
    repeats = written.count(_MAGPIE_FAILURES[3])
    assert counts["exact_duplicates"] >= repeats - 1
    assert counts["empty"] + counts["template_leak"] + counts["exact_duplicates"] + \
        counts["near_duplicates"] >= crafted - 2  # at most one repeat and one variant kept
    rows = read_rows(out)
    prompts = [r["messages"][0]["content"] for r in rows]
    assert len(rows) == card["kept_instructions"] and len(set(prompts)) == len(prompts)
    assert not any(template_leak(p) for p in prompts)
    assert all(r["messages"][1]["role"] == "assistant" for r in rows)


def test_rounds_top_up_to_the_target_and_filter_across_rounds(tmp_path, capsys):
    out = tmp_path / "magpie.jsonl"
    assert _generate("magpie", "--dry-run", "--num-instructions", "12", "-o", str(out)) == 0
    printed = capsys.readouterr().out
    card = read_card(out)
    rows = read_rows(out)
    # the filters drop about one request in four, so one round of 12 cannot be enough
    assert len(card["rounds"]) >= 2 and card["stopped"] == "target_reached"
    assert card["kept_instructions"] == len(rows) == 12
    assert card["rounds"][0]["requests"] == 12
    assert card["requests"] == sum(r["requests"] for r in card["rounds"])
    # every request is kept, dropped by a filter, or over the target
    assert card["requests"] == 12 + sum(card["instruction_filters"].values())
    assert [r["kept_so_far"] for r in card["rounds"]][-1] == 12
    assert "magpie round 2:" in printed and "target reached: 12 of 12" in printed
    prompts = [r["messages"][0]["content"] for r in rows]
    assert len(set(prompts)) == 12  # no duplicate across rounds either
    # the first round is a single-round run's
    single = tmp_path / "single.jsonl"
    assert _generate("magpie", "--dry-run", "--num-instructions", "12", "--max-rounds", "1",
                     "-o", str(single)) == 0
    first = [r["messages"][0]["content"] for r in read_rows(single)]
    assert first == prompts[:len(first)] and len(first) < 12


def test_rounds_stop_when_a_round_adds_nothing(tmp_path, capsys):
    out = tmp_path / "dry.jsonl"
    # a one-token limit cuts off every instruction the fake teacher writes
    assert _generate("magpie", "--dry-run", "--num-instructions", "5", "--query-max-tokens",
                     "1", "-o", str(out)) == 0
    card = read_card(out)
    assert card["stopped"] == "no_new_instructions" and card["kept_instructions"] == 0
    assert len(card["rounds"]) == 1 and card["rounds"][0]["added"] == 0
    assert card["instruction_filters"]["truncated"] + card["instruction_filters"]["empty"] \
        == card["requests"] == 5
    assert "round 1 added no instruction: 0 of 5" in capsys.readouterr().out
    assert read_rows(out) == []


def test_system_prompts_are_taken_in_turn_and_kept_in_the_messages(tmp_path, capsys):
    out = tmp_path / "sys.jsonl"
    assert _generate("magpie", "--dry-run", "--num-instructions", "6", "--system-prompt",
                     "You help with cooking.", "--system-prompt", "You help with maths.",
                     "-o", str(out)) == 0
    rows = read_rows(out)
    assert rows and all(r["messages"][0]["role"] == "system" for r in rows)
    assert {r["messages"][0]["content"] for r in rows} == {"You help with cooking.",
                                                            "You help with maths."}
    assert "You help with" not in capsys.readouterr().out.split("kept", 1)[1]


def test_no_answers_writes_prompts_from_the_tiny_model(varied_model, tmp_path):
    out = tmp_path / "prompts.jsonl"
    assert _generate("magpie", "--model", str(varied_model), "--num-instructions", "4",
                     "--query-max-tokens", "8", "--keep-truncated", "--no-answers",
                     "--concurrency", "4", "-o", str(out)) == 0
    card = read_card(out)
    assert card["pre_query_template"] == CHATML_USER and card["answers"] is False
    assert card["rounds"][0]["requests"] == 4 and card["requests"] >= 4
    assert len(read_rows(out)) == card["kept_instructions"] <= 4
    assert all(set(r) >= {"id", "prompt"} for r in read_rows(out))


def test_bad_num_instructions_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--num-instructions"):
        _generate("magpie", "--dry-run", "--num-instructions", "0", "-o",
                  str(tmp_path / "o.jsonl"))
    with pytest.raises(ConfigError, match="--max-rounds 0"):
        _generate("magpie", "--dry-run", "--max-rounds", "0", "-o",
                  str(tmp_path / "o.jsonl"))


# ---------------------------------------------------------------- raw completions

@pytest.fixture(scope="module")
def tiny_server(varied_model):
    from pipelines.server import LocalServer

    with LocalServer(str(varied_model), served_name="tiny") as server:
        yield server


def _greedy_in_process(model, text: str, max_new_tokens: int):
    from pipelines.llms import BatchedTransformersLLM

    llm = BatchedTransformersLLM(model=str(model))
    llm.load()
    ids = llm.tokenizer(text, add_special_tokens=False).input_ids
    return llm.generations([ids], max_new_tokens=max_new_tokens, do_sample=False)[0][0], \
        len(ids)


@pytest.mark.slow
def test_local_server_continues_raw_text(tiny_server, varied_model):
    import httpx
    import openai

    client = openai.OpenAI(base_url=tiny_server.base_url, api_key="not-needed")
    done = client.completions.create(model="tiny", prompt=CHATML_USER, max_tokens=6,
                                     temperature=0, extra_body={"add_special_tokens": False})
    expected, prompt_tokens = _greedy_in_process(varied_model, CHATML_USER, 6)
    assert done.object == "text_completion"
    assert done.choices[0].text == expected.text
    assert done.choices[0].finish_reason == expected.finish_reason
    assert done.usage.prompt_tokens == prompt_tokens  # the prefix, nothing added
    # the chat route shares the settings and the stop-string cut
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=6,
        temperature=0, stop=[expected.text[:1] or "x"])
    assert chat.choices[0].finish_reason in ("stop", "length")
    assert (expected.text[:1] or "x") not in chat.choices[0].message.content
    for bad in ({"prompt": ""}, {"prompt": "hi", "echo": True}, {"prompt": [1, 2]}):
        r = httpx.post(tiny_server.base_url + "/completions", json={"model": "tiny", **bad})
        assert r.status_code == 400, bad


@pytest.mark.slow
def test_magpie_through_the_endpoint_sends_the_prefix_raw(tiny_server, varied_model):
    from pipelines.llms import MagpieEndpointLLM, make_llm

    llm = make_llm("tiny", base_url=tiny_server.base_url, magpie=True,
                   template_from=str(varied_model), max_new_tokens=6, do_sample=False,
                   seed=1)
    assert isinstance(llm, MagpieEndpointLLM)
    assert llm.magpie_pre_query_template == CHATML_USER
    rows = next(_task(llm).process([{"seed": 1}, {"seed": 2}]))
    expected, _ = _greedy_in_process(varied_model, CHATML_USER, 6)
    # greedy: both requests continue the bare prefix exactly as the in-process model does
    assert [r["instruction"] for r in rows] == [expected.text] * 2
    assert [r["instruction_finish_reason"] for r in rows] == [expected.finish_reason] * 2


# ---------------------------------------------------------------- the bundled model

@pytest.mark.slow
def test_smollm2_writes_user_queries(smollm2):
    from pipelines.llms import make_llm

    llm = make_llm(str(smollm2), magpie=True, max_new_tokens=40, temperature=1.0,
                   do_sample=True, seed=0, batch_size=4)
    # SmolLM2's template opens a conversation with its default system prompt
    assert llm.magpie_pre_query_template.endswith("<|im_end|>\n" + CHATML_USER)
    rows = next(_task(llm).process([{"seed": i} for i in range(4)]))
    kept, counts = filter_instructions(rows, special_tokens(llm.tokenizer),
                                       keep_truncated=True)
    assert counts["template_leak"] == 0 and counts["empty"] == 0
    # what a user would write: plain sentences, most of them asking for something
    assert sum("?" in r["instruction"] or r["instruction"].split()[0].lower() in
               ("write", "explain", "create", "i", "can", "how", "what") for r in kept) >= 2
