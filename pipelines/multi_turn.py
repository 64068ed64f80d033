"""Multi-turn conversations (UltraChat style): a simulated user and the assistant take
turns for ``--turns`` assistant replies, starting from a topic or opening question.

The simulated user is the teacher itself under a user-persona system prompt, shown
the conversation with the roles swapped (its own earlier questions as "assistant"
turns), so any chat model can play the user. The turns are unrolled into the DAG:
assistant_1 >> user_1 >> assistant_2 >> ... so each turn is its own distilabel step.
Each row lists how every assistant turn ended (``finish_reasons``) and is ``truncated``
when any of them was cut off by ``--max-new-tokens``.

    python -m pipelines.multi_turn --topics topics.jsonl --turns 3 -o data/chats.jsonl
"""

# no `from __future__ import annotations`: distilabel reads `process`'s annotations
# at run time to find the `StepInput` parameter.
import argparse
import sys

from distilabel.pipeline import Pipeline
from distilabel.steps import Step, StepInput
from distilabel.steps.tasks import ChatGeneration

from alignment.data import read_prompts
from pipelines import DATA_DIR, runner
from pipelines.fake import SIMULATED_USER_MARK
from pipelines.llms import finish_column, sft_finish_fields

NAME = "align-multi-turn"

USER_PERSONA = (
    f"{SIMULATED_USER_MARK} You are a curious person chatting with an AI assistant about "
    "a topic you care about. Read the assistant's last reply and write your next message "
    "as that person: a follow-up question, a request for an example or a clarification, "
    "or a new angle on the same topic. Write only the message, in one to three sentences, "
    "and never answer on the assistant's behalf.")


class AddTurn(Step):
    """Append the last generation to the conversation, and refresh the user's view.

    Attributes:
        role: the new turn's role.
        finish_task: the task that wrote an assistant turn, whose finish reason is
            appended to ``finish_reasons`` ("" for a user turn: nothing is recorded).

    Input columns:
        - messages (`list[dict]`): the conversation so far
        - generation (`str`): the newest turn
        - llm_<finish_task>_finish_reason (`str`, optional): how it ended
        - finish_reasons (`list[str | None]`, optional): the earlier assistant turns'

    Output columns:
        - messages (`list[dict]`): with the new turn appended as ``role``
        - user_view (`list[dict]`): persona system prompt + the conversation with user
          and assistant swapped, for the simulated user's next turn
        - finish_reasons (`list[str | None]`): with the new assistant turn's (when
          ``finish_task`` is set)
    """

    role: str
    finish_task: str = ""

    @property
    def inputs(self) -> dict[str, bool]:
        extra = {finish_column(self.finish_task): False, "finish_reasons": False} \
            if self.finish_task else {}
        return {"messages": True, "generation": True, **extra}

    @property
    def outputs(self) -> list[str]:
        return ["messages", "user_view"] + (["finish_reasons"] if self.finish_task else [])

    def process(self, inputs: StepInput) -> "StepOutput":  # noqa: F821
        for row in inputs:
            row["messages"] = [*row["messages"], {"role": self.role,
                                                  "content": row["generation"]}]
            if self.finish_task:
                row["finish_reasons"] = [*(row.get("finish_reasons") or []),
                                         row.get(finish_column(self.finish_task))]
            swap = {"user": "assistant", "assistant": "user"}
            row["user_view"] = [{"role": "system", "content": USER_PERSONA}] + [
                {"role": swap[m["role"]], "content": m["content"]} for m in row["messages"]]
        yield inputs


def build(rows: list[dict], llm, turns: int = 2, batch_size: int = 8
          ) -> tuple[Pipeline, runner.Journal]:
    """Rows ``{"id", "order", "messages": [user opening]}``; ``turns`` assistant replies."""
    with Pipeline(name=NAME, cache_dir=runner.cache_root(),
                  description="simulated multi-turn conversations") as pipeline:
        last = runner.load_rows(rows, batch_size)
        for t in range(1, turns + 1):
            reply = ChatGeneration(name=f"assistant_{t}", llm=llm, input_batch_size=batch_size)
            add = AddTurn(name=f"add_assistant_{t}", role="assistant", finish_task=reply.name,
                          input_batch_size=batch_size)
            last = last >> reply >> add
            if t < turns:
                ask = ChatGeneration(name=f"user_{t}", llm=llm, input_batch_size=batch_size,
                                     input_mappings={"messages": "user_view"})
                last = last >> ask >> AddTurn(name=f"add_user_{t}", role="user",
                                              input_batch_size=batch_size)
        journal = runner.Journal(columns=["id", "order", "messages", "model_name",
                                          "finish_reasons"], input_batch_size=batch_size)
        last >> journal
    return pipeline, journal


def generate(openings: list[str], llm, *, turns: int = 2, batch_size: int = 8,
             fresh: bool = False, ray: bool = False) -> list[dict]:
    """Rows ``{"id", "messages", "model_name", "finish_reasons", "truncated"}`` with
    ``2 * turns`` messages and ``turns`` finish reasons each."""
    rows = [{"id": runner.text_id(o), "order": [i],
             "messages": [{"role": "user", "content": o}]} for i, o in enumerate(openings)]
    out = runner.run(lambda part: build(part, llm, turns, batch_size), rows, fresh=fresh,
                     ray=ray)
    for row in out:
        row.update(sft_finish_fields(row["finish_reasons"] or []))
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align generate multi-turn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topics", default=str(DATA_DIR / "seed_topics.jsonl"),
                   help="opening questions or topics (prompt/instruction column)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--turns", type=int, default=2, help="assistant replies per conversation")
    runner.teacher_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    openings = read_prompts(args.topics, args.limit)
    llm = runner.teacher(args)
    rows = generate(openings, llm, turns=args.turns, batch_size=args.concurrency,
                    fresh=args.fresh, ray=args.ray)
    runner.finish(rows, args, "Simulated multi-turn conversations", {
        **runner.generation_info(args, [llm]), "technique": "multi-turn (simulated user)",
        "turns": args.turns, "user_persona": USER_PERSONA, "seed_data": args.topics,
        "openings": len(openings)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
