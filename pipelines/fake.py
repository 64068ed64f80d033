"""A deterministic fake teacher: every output is a pure function of its input.

``FakeLLM`` is an ordinary distilabel ``LLM`` (it implements ``model_name`` and
``generate``), so pipelines run on it exactly as they run on a real model: same
steps, same subprocesses, same cache. It recognises the prompt shapes our
pipelines send and answers in the format each one parses:

- a Self-Instruct prompt ("Develop N user queries ... # Context ...") -> N
  instructions, one per line;
- an Evol-Instruct rewrite or creation prompt ("#The Given Prompt#") -> an evolved
  prompt, or, for a fixed fraction of inputs chosen by hash, one of the failures
  the elimination step must catch (a copy of the parent, a refusal, a too-short
  answer, a leaked template word);
- a simulated-user turn (a system prompt marked ``[simulated-user]``) -> a
  follow-up question;
- a reversal prompt ("Reverse the fact") -> the reversed statement;
- a persona request ("Here is a person:") -> a prompt in that person's voice;
- (``FakeMagpieLLM``) a Magpie prompt, no user turn pending -> a user's instruction, or
  for every fourth request one the instruction filters must drop;
- anything else -> an answer that quotes the last user turn.

With ``judge=True`` it is the fake judge instead (``--dry-run`` of the feedback
pipelines): it answers rating, ranking and pairwise prompts in the strict format each
asks for, and one prompt in seven unparseably, so the failure path shows too.

Its tokens are words: a reply longer than ``max_new_tokens`` words is cut there and
ends with ``"length"``, any other with ``"stop"`` (the ``finish_reason`` every teacher
reports, see ``pipelines/llms.py``), so truncation can be tested without a model.

Used by the test suite for exact expected rows and by ``--dry-run`` for users who
want to see a pipeline's shape before paying for a teacher.
"""

from __future__ import annotations

import re
import time
from typing import Any

from distilabel.models.llms.base import LLM

from alignment.data import stable_hash
from alignment.rubrics import LABELS
from pipelines.llms import FINISH_REASON, LENGTH, TemplateMagpieMixin

FAKE_MODEL_NAME = "fake-teacher"
FAKE_JUDGE_NAME = "fake-judge"

SIMULATED_USER_MARK = "[simulated-user]"

_VERBS = ("Explain", "Describe", "Summarise", "Compare", "List", "Outline", "Illustrate",
          "Evaluate", "Plan", "Classify", "Translate", "Critique")
_OBJECTS = ("the water cycle", "a binary search", "compound interest", "photosynthesis",
            "a haiku about autumn", "the causes of inflation", "a packing list for a hike",
            "the rules of chess", "a polite complaint letter", "prime numbers",
            "the French revolution", "a healthy breakfast", "recursion in Python",
            "the phases of the moon", "a job interview", "plate tectonics")
_CONSTRAINTS = ("in under 100 words", "using a table", "for a ten-year-old",
                "with two worked examples", "citing one common misconception",
                "as a numbered list of steps")


def _last_user(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content", "")
    return ""


def _system(messages: list[dict]) -> str:
    return next((m["content"] for m in messages if m.get("role") == "system"), "")


def _self_instruct(prompt: str) -> str:
    n = int(re.search(r"Develop (\d+) user queries", prompt).group(1))
    context = prompt.split("# Context", 1)[1].split("# Output", 1)[0].strip()
    h = stable_hash(context)
    lines = []
    for i in range(n):
        verb = _VERBS[(h + i) % len(_VERBS)]
        obj = _OBJECTS[(h // 7 + 3 * i) % len(_OBJECTS)]
        lines.append(f"{verb} {obj}.")
    # one in three contexts also echoes itself: a near-copy the novelty filter rejects
    if h % 3 == 0:
        lines.append(context.splitlines()[0])
    return "\n".join(lines)


def _evolve(prompt: str) -> str:
    given = re.split(r"#(?:The )?Given Prompt#:\s*", prompt)[-1]
    given = re.split(r"#(?:Rewritten|Created) Prompt#", given)[0].strip()
    h = stable_hash(prompt)
    kind = h % 8
    if kind == 0:
        return given  # a copy of the parent
    if kind == 1:
        return "Sorry, I cannot rewrite this prompt."
    if kind == 2:
        return "Why?"
    if kind == 3:
        return f"#Rewritten Prompt#: {given} Answer it like the rewritten prompt asks."
    if "#Created Prompt#" in prompt:
        return f"{_VERBS[h % len(_VERBS)]} {_OBJECTS[(h // 5) % len(_OBJECTS)]}, " \
               f"then relate it to: {given[:60]}"
    return f"{given.rstrip('.?! ')}, {_CONSTRAINTS[(h // 3) % len(_CONSTRAINTS)]}."


def _reverse(prompt: str) -> str:
    fact = prompt.split("Fact:", 1)[1].strip().splitlines()[0].strip().rstrip(".")
    m = re.match(r"(.+?) (is|was|are|were) (.+)", fact)
    if not m:
        return fact + "."
    subject, verb, obj = m.groups()
    obj = obj[0].upper() + obj[1:]
    return f"{obj} {verb} {subject}."


def _persona_prompt(prompt: str) -> str:
    persona = prompt.split("\n", 2)[1].split(". ", 1)[0].strip().rstrip(".")
    who = persona[:1].lower() + persona[1:]
    h = stable_hash(prompt)
    return f"As {who}, I need help: {_VERBS[h % len(_VERBS)].lower()} " \
           f"{_OBJECTS[(h // 11) % len(_OBJECTS)]} for me?"


def fake_reply(messages: list[dict], index: int = 0, model: str = FAKE_MODEL_NAME) -> str:
    """The fake teacher's reply to one conversation (``index``: which of n generations;
    ``model`` salts free-form answers so two fake models disagree)."""
    user, system = _last_user(messages), _system(messages)
    if "user queries" in user and "# Context" in user:
        return _self_instruct(user)
    if "Given Prompt#" in user:
        return _evolve(user)
    if "Reverse the fact" in user:
        return _reverse(user)
    if user.startswith("Here is a person:\n"):
        return _persona_prompt(user)
    if SIMULATED_USER_MARK in system:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return f"Thanks. Follow-up {turn}: can you give an example about " \
               f"{_OBJECTS[stable_hash(user) % len(_OBJECTS)]}?"
    salt = "" if model == FAKE_MODEL_NAME else model
    h = stable_hash(salt + system + "\n" + user + f"\n{index}")
    head = user.strip().splitlines()[0][:80] if user.strip() else "(empty)"
    steps = ("First, restate the task. Then work through it step by step, and "
             "justify each step. " if system else "")
    variant = f" (candidate {index + 1})" if index else ""
    return f"{steps}Answer to \"{head}\": reference {h % 10_000:04d}.{variant}"


def fake_judgement(prompt: str) -> str:
    """The fake judge's answer: a pure function of the prompt, in the format the prompt
    asks for, except for one prompt in seven, which gets an unparseable answer (so the
    failure path shows up in dry runs and tests)."""
    h = stable_hash(prompt)
    if h % 7 == 0:
        return "I think it is quite good overall."
    if prompt.startswith("# Ranking"):
        k = int(re.search(r"Rank the (\d+) responses", prompt).group(1))
        order = sorted(range(k), key=lambda i: stable_hash(f"{h}:{i}"))
        return "Ranking: " + " > ".join(LABELS[i] for i in order)
    if prompt.startswith("# Pairwise"):
        return f"Verdict: {'AB'[h % 2]}"
    m = re.search(r"Score the response from (\d) to (\d)", prompt)
    if m:
        low, high = int(m.group(1)), int(m.group(2))
        return f"Rating: {low + h % (high - low + 1)}\nRationale: fake verdict {h % 1000:03d}."
    return "Unrecognised judge prompt."


class FakeLLM(LLM):
    """A deterministic distilabel LLM for tests and dry runs: the fake teacher, or with
    ``judge`` the fake judge.

    Attributes:
        delay: seconds to sleep per ``generate`` call (one call per batch), so a test
            can stop a pipeline part-way through.
        name: the model name reported in outputs and dataset cards.
        judge: answer judge prompts in their formats (``fake_judgement``), the same
            answer for every generation, instead of as a teacher.
    """

    delay: float = 0.0
    name: str = FAKE_MODEL_NAME
    judge: bool = False

    @property
    def model_name(self) -> str:
        return self.name

    def generate(self, inputs: list[Any], num_generations: int = 1,
                 max_new_tokens: int = 256, temperature: float = 0.0) -> list[dict]:
        # explicit parameters: distilabel turns generate's signature into the LLM's
        # runtime parameters, and a bare **kwargs would become a required one
        if self.delay:
            time.sleep(self.delay)
        outputs = []
        for conversation in inputs:
            replies = [cut(fake_judgement(conversation[-1]["content"]) if self.judge
                           else fake_reply(list(conversation), i, self.name), max_new_tokens)
                       for i in range(num_generations)]
            outputs.append({
                "generations": [text for text, _ in replies],
                "statistics": {"input_tokens": [sum(len(m["content"].split())
                                                    for m in conversation)] * num_generations,
                               "output_tokens": [len(text.split()) for text, _ in replies]},
                FINISH_REASON: [reason for _, reason in replies],
            })
        return outputs


def cut(text: str, max_new_tokens: int) -> tuple[str, str]:
    """The fake teacher's token limit (a token is a word): the reply and how it ended,
    ``"length"`` when it had more words than ``max_new_tokens``, else ``"stop"``."""
    words = list(re.finditer(r"\S+", text))
    if len(words) <= max_new_tokens:
        return text, "stop"
    return (text[:words[max_new_tokens - 1].end()] if max_new_tokens > 0 else ""), LENGTH


FAKE_PRE_QUERY = "<|im_start|>user\n"  # ChatML's user-turn prefix, what a dry run shows

# what the fake Magpie teacher writes in place of a query for every fourth request: each
# failure the instruction filters of `align generate magpie` must catch
_MAGPIE_FAILURES = ("", "assistant\nSure! Here is a question you could ask me.",
                    "Name a fruit.<|im_end|>\n<|im_start|>user\nAnd a vegetable?",
                    "Explain the water cycle in simple words for a child.",
                    "Please explain the water cycle in simple words for a child.")


def fake_query(seed: int, index: int) -> str:
    """The fake Magpie teacher's instruction for the ``index``-th request of a call seeded
    ``seed``: every fourth request one of ``_MAGPIE_FAILURES`` (an empty one, two template
    leaks, a repeated one and its near-duplicate), taken in turn from a place the seed
    picks; the others a new instruction."""
    h = stable_hash(f"{seed}:{index}")
    if index % 4 == 3:
        return _MAGPIE_FAILURES[(index // 4 + seed) % len(_MAGPIE_FAILURES)]
    return f"{_VERBS[(h // 10) % len(_VERBS)]} {_OBJECTS[(h // 120) % len(_OBJECTS)]} " \
           f"{_CONSTRAINTS[(h // 1920) % len(_CONSTRAINTS)]}."


class FakeMagpieLLM(FakeLLM, TemplateMagpieMixin):
    """The fake teacher usable by distilabel's ``Magpie`` task (``--dry-run`` of
    ``align generate magpie``): a Magpie prompt gets :func:`fake_query`, any other
    conversation the fake teacher's answer. Its pre-query template is ChatML's."""

    magpie_pre_query_template: str | None = FAKE_PRE_QUERY

    def generate(self, inputs: list[Any], num_generations: int = 1,
                 max_new_tokens: int = 256, temperature: float = 0.0) -> list[dict]:
        seed = self._take_seed() or 0
        if not inputs or not all(self.wants_query(c) for c in inputs):
            outputs = super().generate(inputs, num_generations, max_new_tokens, temperature)
        else:
            outputs = []
            for i, _ in enumerate(inputs):
                text, reason = cut(fake_query(seed, i), max_new_tokens)
                outputs.append({"generations": [text],
                                "statistics": {"input_tokens": [0],
                                               "output_tokens": [len(text.split())]},
                                FINISH_REASON: [reason]})
        self._last_finish = [o[FINISH_REASON][0] for o in outputs]
        return outputs
