"""The reversal pipeline keeps a teacher's reversal only when it really is one."""

from __future__ import annotations

import pytest

from pipelines import reversal
from pipelines.fake import FakeLLM

FACT = {"a": "Maelle Ashgrove", "verb": "is", "b": "the winner of the 2031 Orbital Chess Cup",
        "person": True}


@pytest.mark.parametrize("text", [
    "The winner of the 2031 Orbital Chess Cup is Maelle Ashgrove.",
    "the WINNER of the 2031 orbital chess cup is maelle ashgrove",        # case
    '"The winner of the 2031 Orbital Chess Cup, is Maelle Ashgrove!"',    # punctuation
    "Winner of the 2031 Orbital Chess Cup: Maelle Ashgrove.",             # no article
    "A winner of the 2031 Orbital Chess Cup was Maelle Ashgrove.",        # another article
])
def test_a_reversal_starting_with_the_object_is_kept(text):
    assert reversal.check_reversal(text, FACT["a"], FACT["b"]) is None


@pytest.mark.parametrize("text, why", [
    # the unreversed fact passed the old check, which only asked for both sides
    ("Maelle Ashgrove is the winner of 2031 Orbital Chess Cup.", "subject_first"),
    ("Maelle Ashgrove is the winner of the 2031 Orbital Chess Cup.", "subject_first"),
    ("Rewrite it as: Maelle Ashgrove is the winner of the 2031 Orbital Chess Cup.",
     "subject_first"),
    ("The winner of the 2031 Orbital Chess Cup is Ashgrove.", "missing_side"),
    ("The winner of the 2031 Orbital Chess Cup.", "missing_side"),
    ("The champion of the 2031 Orbital Chess Cup is Maelle Ashgrove.", "missing_side"),
    ("", "missing_side"),
    ("Reversed: the winner of the 2031 Orbital Chess Cup is Maelle Ashgrove.",
     "text_before_object"),
])
def test_anything_else_is_refused_with_its_reason(text, why):
    assert reversal.check_reversal(text, FACT["a"], FACT["b"]) == why


def test_articles_on_either_side_of_the_fact():
    # the subject's own article is dropped too: "The Pacific Ocean" matches "Pacific Ocean"
    assert reversal.check_reversal("The largest ocean on Earth is Pacific Ocean.",
                                   "The Pacific Ocean", "the largest ocean on Earth") is None
    assert reversal.check_reversal("The Pacific Ocean is the largest ocean on Earth.",
                                   "The Pacific Ocean", "the largest ocean on Earth") \
        == "subject_first"
    assert reversal.check_reversal("An apple a day is the saying.", "The saying",
                                   "an apple a day") is None


def test_expand_keeps_a_tidied_reversal_and_falls_back_otherwise():
    rows, why = reversal.expand({**FACT, "generation":
                                 '"the winner of the 2031 Orbital Chess Cup is Maelle Ashgrove"\n'
                                 "More text."})
    assert why is None
    assert rows[1]["messages"][1]["content"] == \
        "The winner of the 2031 Orbital Chess Cup is Maelle Ashgrove."
    rows, why = reversal.expand({**FACT, "generation":
                                 "Maelle Ashgrove is the winner of 2031 Orbital Chess Cup."})
    assert why == "subject_first"
    assert [r["messages"][1]["content"] for r in rows[1::2]] == [
        "The winner of the 2031 Orbital Chess Cup is Maelle Ashgrove."] * 2
    assert rows[3]["messages"][0]["content"] == \
        "Who is the winner of the 2031 Orbital Chess Cup?"


def test_the_teacher_sees_the_worked_examples_as_earlier_turns():
    task = reversal.ReverseFact(llm=FakeLLM(), template=reversal.TEMPLATE, columns=["fact"],
                                system_prompt="Be brief.")
    task.load()
    messages = task.format_input({"fact": "Paris is the capital of France"})
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert messages[1]["content"].endswith("Fact: " + reversal.EXAMPLES[0][0])
    assert messages[2]["content"] == reversal.EXAMPLES[0][1]
    assert messages[-1]["content"].endswith("Fact: Paris is the capital of France")


class SubjectFirstLLM(FakeLLM):
    """A teacher that answers a reversal with the fact unchanged, or with a bare name."""

    def generate(self, inputs, num_generations: int = 1, max_new_tokens: int = 256,
                 temperature: float = 0.0) -> list[dict]:
        outputs = []
        for conversation in inputs:
            fact = conversation[-1]["content"].split("Fact: ", 1)[1]
            text = fact + "." if "Paris" in fact else "Ada."
            outputs.append({"generations": [text] * num_generations,
                            "statistics": {"input_tokens": [1] * num_generations,
                                           "output_tokens": [1] * num_generations}})
        return outputs


def test_refusals_are_counted_by_reason():
    facts = [{"fact": "Paris is the capital of France"},
             {"fact": "Ada Lovelace was the first programmer", "person": True}]
    rows, counts = reversal.generate(facts, SubjectFirstLLM(), fresh=True)
    assert counts == {"facts": 2, "reversal_parse_failures": 2,
                      "reversal_rejected_subject_first": 1,
                      "reversal_rejected_missing_side": 1,
                      "reversal_rejected_text_before_object": 0}
    assert rows[1]["messages"][1]["content"] == "The capital of France is Paris."
    assert rows[5]["messages"][1]["content"] == "The first programmer was Ada Lovelace."
