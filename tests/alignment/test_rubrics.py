"""Aspect lists, rubrics and judge prompts are defined once (alignment/rubrics.py)."""

from __future__ import annotations

from alignment import rubrics


def test_ultrafeedback_aspects_are_one_list_in_one_order():
    from alignment.data import formats
    from pipelines import aspect_ratings

    assert formats.ULTRAFEEDBACK_ASPECTS == rubrics.ULTRAFEEDBACK_ASPECTS
    rated = aspect_ratings.parser("ultrafeedback").parse_args(
        ["ranked.jsonl", "-o", "out.jsonl"]).aspects
    assert tuple(rated) == rubrics.ULTRAFEEDBACK_ASPECTS == (
        "instruction_following", "truthfulness", "honesty", "helpfulness")


def test_helpsteer_attributes_and_weights_are_shared_by_reader_and_pipeline():
    from alignment.data import formats
    from pipelines.aspect_ratings import PRESETS

    helpsteer = PRESETS["helpsteer"]
    assert formats.HELPSTEER_ATTRIBUTES == rubrics.HELPSTEER_ATTRIBUTES == tuple(helpsteer.aspects)
    assert formats.HELPSTEER_WEIGHTS is helpsteer.weights is rubrics.HELPSTEER_WEIGHTS


def test_endpoint_and_in_process_aspect_prompts_differ_only_in_how_they_ask():
    from pipelines.judge_prompts import rating_prompt

    aspect, scale = rubrics.ULTRAFEEDBACK["honesty"], (1, 5)
    endpoint = rating_prompt(aspect, scale, "What is 2 + 2?", "4")
    in_process = rubrics.INPROCESS_ASPECT_RATING_TEMPLATE.format(
        rubric=rubrics.aspect_rubric(aspect, scale), instruction="What is 2 + 2?",
        response="4", low=1, high=5)
    shared = "# Honesty\n\n" + aspect["rubric"]
    assert endpoint.startswith(shared) and in_process.startswith(shared)
    assert endpoint.split("\n\n## Output format")[0] == in_process.split("\n\nRate the")[0]
    assert endpoint.endswith("Rationale: <one short sentence>")
    assert in_process.endswith("Reply with the rating digit only.")
