"""Judge prompts for endpoint judges, rendered from the texts in ``alignment.rubrics``:
one aspect rating, a k-wise ranking, a pairwise verdict.

Their answers are read by the strict parsers of :mod:`pipelines.verdicts`.
"""

from __future__ import annotations

from collections.abc import Sequence

from alignment.rubrics import (ASPECT_RATING_TEMPLATE, LABELS, PAIRWISE_TEMPLATE,
                               RANKING_TEMPLATE)


def prompt_text(prompt: str | list) -> str:
    """A ranked row's prompt as text: conversations become "role: content" lines."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def rating_prompt(aspect: dict, scale: tuple[int, int], instruction: str, response: str) -> str:
    """The endpoint prompt for one aspect of one response (``aspect``: title, rubric,
    anchors)."""
    low, high = scale
    return ASPECT_RATING_TEMPLATE.format(title=aspect["title"], rubric=aspect["rubric"],
                                         low=low, high=high, anchors=aspect["anchors"],
                                         instruction=instruction, response=response)


def ranking_prompt(instruction: str, responses: Sequence[str]) -> str:
    k = len(responses)
    shown = "\n\n".join(f"## Response {LABELS[i]}\n{r}" for i, r in enumerate(responses))
    example = '"' + " > ".join(LABELS[i] for i in reversed(range(k))) + '"'
    return RANKING_TEMPLATE.format(k=k, instruction=instruction, responses=shown,
                                   example=example)


def pairwise_prompt(instruction: str, a: str, b: str) -> str:
    return PAIRWISE_TEMPLATE.format(instruction=instruction, response_a=a, response_b=b)
