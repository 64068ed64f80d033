"""Pipelines on the bundled SmolLM2 teacher, in-process, tiny sizes."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_reversal_on_smollm2(smollm2):
    from pipelines import reversal
    from pipelines.llms import make_llm

    llm = make_llm("smollm2", batch_size=2, max_new_tokens=24, do_sample=False)
    facts = [{"fact": "Paris is the capital of France"},
             {"fact": "Hydrogen is the lightest chemical element"}]
    rows, counts = reversal.generate(facts, llm, batch_size=2)
    assert counts["facts"] == 2
    assert 0 <= counts["reversal_parse_failures"] <= 2
    assert len(rows) == 8
    assert [r["kind"] for r in rows[:4]] == ["statement", "statement_reversed",
                                              "qa_forward", "qa_reverse"]
    reversed_statement = rows[1]["messages"][1]["content"]
    # whatever the small model wrote, the kept statement names both sides of the fact
    assert "paris" in reversed_statement.lower() and "france" in reversed_statement.lower()
    assert rows[2]["messages"][1]["content"] == "Paris is the capital of France."
