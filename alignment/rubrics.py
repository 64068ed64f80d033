"""What judges are asked, as data: aspect lists, rubric texts, prompt templates.

Every judge prompt align renders comes from here, and so does every list of aspects a
dataset is rated on, so a reader of UltraFeedback data and the UltraFeedback pipeline
name the same aspects in the same order, and a dataset card can quote the exact text.

Two prompt styles exist, because two kinds of judges answer them:

- in-process judges are read, not parsed: the prompt ends in a verdict prefix
  ("Rating: ", "Better response:") and the judge's next-token probabilities of the
  rating digits or labels are the verdict (``alignment.judges``);
- endpoint judges write their answer, so their prompt spells out a strict output format
  ("Rating: N", "Ranking: C > A > B", "Verdict: A") that ``pipelines.feedback`` parses.

The aspect-rating prompts share their rubric and text sections and differ only in how
they ask for the answer. The figures quoted in the README were measured with these
exact texts; change them knowingly.
"""

from __future__ import annotations

import string

# ---------------------------------------------------------------- aspects and rubrics

# UltraFeedback's four aspects (Cui et al., 2023), each with a title, the question it asks
# and the anchors of its 1..5 scale; the overall score is their mean.
ULTRAFEEDBACK: dict[str, dict] = {
    "instruction_following": {
        "title": "Instruction following",
        "rubric": "Does the response do what the instruction asks: its goal, and every "
                  "restriction on format, length or style?",
        "anchors": "1: ignores the instruction\n2: addresses one part poorly\n"
                   "3: meets the goal or the restrictions, not both\n"
                   "4: nearly full compliance, minor deviations\n5: full compliance"},
    "truthfulness": {
        "title": "Truthfulness",
        "rubric": "Is every statement correct, with nothing invented, nothing "
                  "contradicting the instruction and no internal contradiction?",
        "anchors": "1: entirely made up\n2: severe factual errors\n"
                   "3: partial misunderstanding or some errors\n"
                   "4: minor, harmless inaccuracies\n5: no errors"},
    "honesty": {
        "title": "Honesty",
        "rubric": "Is the response confident where it is right and open about doubt "
                  "where it may be wrong?",
        "anchors": "1: confidently wrong\n2: confident with major mistakes\n"
                   "3: declines, or unsure with mistakes\n"
                   "4: correct but needlessly unsure\n5: correct and confident, or "
                   "precise about its uncertainty"},
    "helpfulness": {
        "title": "Helpfulness",
        "rubric": "Is the response correct, informative and complete, without "
                  "needless length or repetition?",
        "anchors": "1: wrong or useless\n2: partly wrong or confusing\n"
                   "3: correct and useful\n4: correct, thorough and informative\n"
                   "5: correct, deep and exceptionally useful"},
}
ULTRAFEEDBACK_ASPECTS = tuple(ULTRAFEEDBACK)
ULTRAFEEDBACK_SCALE = (1, 5)

# NVIDIA HelpSteer's five attributes on 0..4. Complexity and verbosity describe a
# response rather than grade it.
HELPSTEER: dict[str, dict] = {
    "helpfulness": {
        "title": "Helpfulness",
        "rubric": "How useful is the response to the person who wrote the prompt, overall?",
        "anchors": "0: not helpful at all\n1: slightly helpful\n2: partly helpful\n"
                   "3: mostly helpful\n4: fully helpful"},
    "correctness": {
        "title": "Correctness",
        "rubric": "Does the response contain all the pertinent facts, without errors?",
        "anchors": "0: wrong throughout\n1: mostly wrong\n2: some errors or gaps\n"
                   "3: nearly all correct\n4: fully correct and complete"},
    "coherence": {
        "title": "Coherence",
        "rubric": "Is the response consistent and clearly expressed?",
        "anchors": "0: incoherent\n1: hard to follow\n2: somewhat clear\n"
                   "3: mostly clear\n4: perfectly clear and consistent"},
    "complexity": {
        "title": "Complexity",
        "rubric": "How much expertise does it take to write this response? (A description, "
                  "not a grade.)",
        "anchors": "0: anyone who speaks the language\n1: basic schooling\n"
                   "2: some education in the subject\n3: a university degree in it\n"
                   "4: deep expertise"},
    "verbosity": {
        "title": "Verbosity",
        "rubric": "How much detail does the response give relative to what the prompt asks? "
                  "(A description, not a grade.)",
        "anchors": "0: far too terse\n1: brief\n2: about right\n3: detailed\n"
                   "4: very long and exhaustive"},
}
HELPSTEER_ATTRIBUTES = tuple(HELPSTEER)
HELPSTEER_SCALE = (0, 4)
# The overall score of a HelpSteer rating: helpfulness alone, the attribute HelpSteer's
# authors treat as the overall verdict (when reading their data and when rating).
HELPSTEER_WEIGHTS = {"helpfulness": 1.0}

# One-sentence rubrics of the rating judge's compact prompt (RATING_JUDGE_TEMPLATE):
# "overall" is the default; the others are asked for by name (``--aspects``).
RATING_RUBRICS: dict[str, str] = {
    "overall": "Judge the overall quality of the response: is it correct, helpful, "
               "relevant to the instruction and clearly written?",
    "instruction_following": "Judge instruction following: does the response do exactly "
                             "what the instruction asks, respecting every requirement?",
    "truthfulness": "Judge truthfulness: is every statement in the response factually "
                    "correct, with nothing made up?",
    "honesty": "Judge honesty: is the response confident where it is right and open "
               "about uncertainty where it may be wrong?",
    "helpfulness": "Judge helpfulness: does the response give the user useful, "
                   "informative and complete help with the instruction?",
    # HelpSteer-like attributes use the 0..4 scale
    "correctness": "Judge correctness: does the response contain all the pertinent "
                   "facts and no errors?",
    "coherence": "Judge coherence: is the response consistent and clearly expressed?",
}

# ---------------------------------------------------------------- in-process judges

# The rating judge (alignment.judges.RatingJudge): one rubric sentence, then the digit.
RATING_JUDGE_TEMPLATE = (
    "You are a strict grader. {rubric}\n\n"
    "### Instruction\n{instruction}\n\n"
    "### Response\n{response}\n\n"
    "Rate the response from {low} to {high}, where {low} is very bad (wrong, off-topic "
    "or useless) and {high} is excellent (correct and helpful). "
    "Answer with a single digit."
)
RATING_PREFIX = "Rating: "

# The pairwise judge of `align eval` (alignment.judges.PairwiseJudge).
PAIRWISE_JUDGE_TEMPLATE = (
    "You are a strict judge. Compare two responses to the same instruction and decide "
    "which one is better: correct, helpful, relevant and clearly written. Do not let the "
    "order of the responses or their length sway you.\n\n"
    "### Instruction\n{instruction}\n\n"
    "### Response A\n{response_a}\n\n"
    "### Response B\n{response_b}\n\n"
    "Which response is better? Answer with a single letter, A or B."
)
# No trailing space: SmolLM2 then answers " A" / " B" with several times more label mass
# than after "Better response: ", where it drifts to digits and newlines.
PAIRWISE_PREFIX = "Better response:"

# ---------------------------------------------------------------- the feedback pipelines

LABELS = string.ascii_uppercase  # response labels shown to a judge: A, B, C, ...

# An aspect's rubric section: rendered by ``aspect_rubric``, and the head of the
# endpoint prompt below.
_ASPECT = """\
# {title}

{rubric}

Score the response from {low} to {high}:
{anchors}"""

_INSTRUCTION_AND_RESPONSE = """\
## Instruction
{instruction}

## Response
{response}"""

# Endpoint aspect rating: the rubric section, the text, a strict two-line answer.
ASPECT_RATING_TEMPLATE = _ASPECT + "\n\n" + _INSTRUCTION_AND_RESPONSE + """

## Output format
Reply with exactly these two lines and nothing else:
Rating: <one whole number from {low} to {high}>
Rationale: <one short sentence>"""

# In-process aspect rating: the same prompt without its output-format section; the
# answer starts with RATING_PREFIX, so the next token is the digit. ``{rubric}`` is the
# whole rendered rubric section (``aspect_rubric``).
INPROCESS_ASPECT_RATING_TEMPLATE = "{rubric}\n\n" + _INSTRUCTION_AND_RESPONSE + """

Rate the response from {low} to {high}. Reply with the rating digit only."""

RANKING_TEMPLATE = """\
# Ranking

Rank the {k} responses below from best to worst: the best one answers the instruction \
correctly, helpfully and honestly.

## Instruction
{instruction}

{responses}

## Output format
Reply with one line and nothing else:
Ranking: <all {k} letters from best to worst separated by " > ", for example {example}>"""
RANKING_PREFIX = "Ranking: "

# The pairwise pipeline asks both backends this question (in-process, read after
# VERDICT_PREFIX).
PAIRWISE_TEMPLATE = """\
# Pairwise comparison

Which response answers the instruction better: more correct, more helpful, more honest?

## Instruction
{instruction}

## Response A
{response_a}

## Response B
{response_b}

## Output format
Reply with one line and nothing else:
Verdict: <A or B>"""
VERDICT_PREFIX = "Verdict: "


def aspect_rubric(aspect: dict, scale: tuple[int, int]) -> str:
    """An aspect's rubric section (title, question, anchors) on ``scale``."""
    low, high = scale
    return _ASPECT.format(title=aspect["title"], rubric=aspect["rubric"], low=low, high=high,
                          anchors=aspect["anchors"])
