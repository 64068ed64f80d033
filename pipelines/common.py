"""Steps and helpers shared by the pipelines: the rating judge as a distilabel step,
instruction clean-up, seed loading and the pipeline cache location."""

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilabel.steps import GlobalStep, Step, StepInput
from pydantic import PrivateAttr

from alignment.errors import DataError

if TYPE_CHECKING:
    from distilabel.typing import StepOutput

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_SEEDS = DATA_DIR / "seed_prompts.jsonl"
SEED_FIELDS = ("instruction", "prompt", "input", "task", "question")


def pipeline_cache_dir() -> Path:
    """distilabel's cache: a re-run with the same steps and parameters resumes from it."""
    from alignment.models import align_home

    return align_home() / "pipelines"


def load_seeds(path: str | Path | None = None, limit: int | None = None) -> list[str]:
    """Seed instructions from a JSONL/JSON/Parquet/CSV file or a plain text file (one per
    line). A row may name its text ``instruction``, ``prompt``, ``input``, ``task`` or
    ``question``."""
    path = Path(path or DEFAULT_SEEDS)
    if not path.exists():
        raise DataError(path, "seed file not found; pass --seeds with a .jsonl of "
                              "{\"instruction\": ...} rows or a .txt with one per line")
    if path.suffix.lower() == ".txt":
        seeds = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        seeds = [s for s in seeds if s]
    else:
        from alignment.data import read_rows

        seeds = []
        for n, row in enumerate(read_rows(path), start=1):
            field = next((f for f in SEED_FIELDS if isinstance(row.get(f), str)), None)
            if field is None:
                raise DataError(path, f"no text field; expected one of {', '.join(SEED_FIELDS)}",
                                row=n)
            seeds.append(row[field].strip())
    if not seeds:
        raise DataError(path, "no seed instructions in the file")
    return seeds[:limit] if limit else seeds


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
                key = " ".join(text.lower().split())
                if not (self.min_chars <= len(text) <= self.max_chars) or key in seen:
                    continue
                seen.add(key)
                out.append({"instruction": text, "seed": row.get("input", "")})
        yield out[:self.max_instructions] if self.max_instructions else out


class RatingJudgeStep(Step):
    """Scores every response of a row with `alignment.judges.RatingJudge`.

    The judge reads the rating off the model's next-token probabilities for the digits of
    the scale; a verdict it cannot compute is None in `scores`, never a made-up number,
    and its raw record is always kept in `judge_raw`.

    Attributes:
        judge_model: bundled model name, model folder or hub id of the judge.
        aspects: rubric aspects (`overall`, or UltraFeedback's `instruction_following`,
            `truthfulness`, `honesty`, `helpfulness`); several give per-aspect `ratings`.
        scale: lowest and highest rating, e.g. (1, 5) or (0, 4).
        judge_batch_size: (prompt, response) pairs per forward pass.
        min_digit_mass: withhold verdicts whose digit probability mass is below this.
        num_threads: torch CPU threads for the judge's process (None: torch's default).

    Input columns:
        - instruction (`str`): the prompt the responses answer.
        - generations (`List[str]`): the candidate responses.

    Output columns:
        - scores (`List[float | None]`): one score per response.
        - judge_raw (`List[str]`): the judge's raw record per response (JSON).
        - judge_digit_mass (`List[float]`): probability mass the rating digits got.
        - ratings (`List[Dict[str, float | None]]`): per-aspect scores (several aspects only).
        - judge (`str`): the judge's name.

    Examples:
        ```python
        step = RatingJudgeStep(judge_model="smollm2")
        step.load()
        next(step.process([{"instruction": "2+2?", "generations": ["4", "7"]}]))
        ```
    """

    judge_model: str = "smollm2"
    aspects: list[str] = ["overall"]
    scale: tuple[int, int] = (1, 5)
    judge_batch_size: int = 8
    min_digit_mass: float = 0.0
    num_threads: int | None = None

    _judge: Any = PrivateAttr(None)

    @property
    def inputs(self) -> list[str]:
        return ["instruction", "generations"]

    @property
    def outputs(self) -> list[str]:
        extra = ["ratings"] if len(self.aspects) > 1 else []
        return ["scores", "judge_raw", "judge_digit_mass", "judge", *extra]

    def load(self) -> None:
        super().load()
        from alignment.judges import RatingJudge

        if self.num_threads:
            import torch

            torch.set_num_threads(self.num_threads)
        self._judge = RatingJudge(self.judge_model, rubric=self.aspects, scale=self.scale,
                                  batch_size=self.judge_batch_size,
                                  min_digit_mass=self.min_digit_mass)

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        many = len(self.aspects) > 1
        pending = [(r, g) for r, row in enumerate(inputs) for g in row["generations"]]
        scored = [(r, g) for r, g in pending if g is not None]
        verdicts = iter(self._judge.score([inputs[r]["instruction"] for r, _ in scored],
                                          [g for _, g in scored]))
        for row in inputs:
            row.update(scores=[], judge_raw=[], judge_digit_mass=[], judge=self._judge.name)
            if many:
                row["ratings"] = []
        for r, g in pending:
            # the teacher failed to answer: there is nothing to judge
            v = next(verdicts) if g is not None else {
                "score": None, "digit_mass": 0.0, "ratings": dict.fromkeys(self.aspects),
                "raw": json.dumps({"error": "no response to judge"})}
            row = inputs[r]
            row["scores"].append(v["score"])
            row["judge_raw"].append(v["raw"])
            row["judge_digit_mass"].append(v["digit_mass"])
            if many:
                row["ratings"].append(v["ratings"])
        yield inputs
