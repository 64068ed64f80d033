"""Generated instructions made usable: list markers and quotes stripped, fragments and
run-ons dropped, duplicates across seeds removed (the preference pipeline's
``--self-instruct`` phase)."""

import re
from typing import TYPE_CHECKING, Any

from distilabel.steps import GlobalStep, StepInput

from alignment.data import normalised

if TYPE_CHECKING:
    from distilabel.typing import StepOutput

_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\(\d+\)|query\s*\d*:|instruction\s*\d*:)\s*",
                        re.IGNORECASE)


def clean_instruction(text: str) -> str:
    """Strip list markers and quotes a model puts around a generated instruction."""
    return _LIST_MARK.sub("", text.strip()).strip().strip('"').strip()


class CleanInstructions(GlobalStep):
    """Turns lists of generated instructions into one clean, unique instruction per row.

    Sees every row at once (a global step) so duplicates across seeds are dropped and
    the total is capped at `max_instructions`, in a stable order.

    Attributes:
        max_instructions: keep at most this many instructions (None = all).
        min_chars: drop instructions shorter than this (fragments, headings).
        max_chars: drop instructions longer than this (run-on generations).

    Input columns:
        - instructions (`List[str]`): instructions generated from one seed.

    Output columns:
        - instruction (`str`): one cleaned instruction per row.
        - seed (`str`): the seed it came from.

    Examples:
        ```python
        step = CleanInstructions(max_instructions=2)
        step.load()
        next(step.process([{"input": "s", "instructions": ["1. Name a fruit.", "- Name a fruit."]}]))
        # [{"instruction": "Name a fruit.", "seed": "s"}]
        ```
    """

    max_instructions: int | None = None
    min_chars: int = 12
    max_chars: int = 300

    @property
    def inputs(self) -> list[str]:
        return ["instructions"]

    @property
    def outputs(self) -> list[str]:
        return ["instruction", "seed"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for row in inputs:
            for raw in row.get("instructions") or []:
                text = clean_instruction(raw)
                key = normalised([text])[0]  # what every exact-duplicate check compares
                if not (self.min_chars <= len(text) <= self.max_chars) or key in seen:
                    continue
                seen.add(key)
                out.append({"instruction": text, "seed": row.get("input", "")})
        yield out[:self.max_instructions] if self.max_instructions else out
