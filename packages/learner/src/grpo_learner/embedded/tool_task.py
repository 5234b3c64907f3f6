"""The tool-use task: multiplications a tiny model cannot do in its head, and a calculator it can call.

Problems are `a*b=` with a of 2–3 digits and b of 2 digits (`347*58=`); the reference is the product.
A correct episode with the tool, in the `calculator` environment's fixed syntax, reads

    347*58=<calc>347*58</calc><result>20126</result>\\boxed{20126}

where the model writes `<calc>347*58</calc>` (its turn stops on the `</calc>` token), the environment
answers `<result>20126</result>`, and the model copies the value into `\\boxed{}`. The warm-up
transcripts also answer part of the problems directly (`347*58=\\boxed{20126}`), the way a model that
has never been rewarded for the tool answers: the warmed model then calls the tool only some of the
time, and since the direct answers are almost always wrong (5-digit products computed in the head of
a ~0.8M-parameter model), GRPO has mixed-reward groups to learn from. The split into training and
held-out problems is a pure function of the seed.
"""

from __future__ import annotations

import random
from fractions import Fraction

from grpo_learner.embedded.task import Problem

CALL, CALL_END = "<calc>", "</calc>"  # the model's call; its turn stops on CALL_END
RESULT, RESULT_END = "<result>", "</result>"  # the environment's observation
TOOL_TOKENS = (CALL, CALL_END, RESULT, RESULT_END)  # one token each in the embedded tokenizer

FIRST = (10, 999)  # a: 2-3 digits
SECOND = (10, 99)  # b: 2 digits


def multiplication_problems(
    seed: int, train: int = 5000, heldout: int = 200
) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out): distinct `a*b` drawn with the seed; no pair is in both."""
    firsts = FIRST[1] - FIRST[0] + 1
    seconds = SECOND[1] - SECOND[0] + 1
    drawn = random.Random(seed).sample(range(firsts * seconds), train + heldout)
    problems = [_problem(FIRST[0] + i // seconds, SECOND[0] + i % seconds) for i in drawn]
    return problems[:train], problems[train:]


def _problem(a: int, b: int) -> Problem:
    expression = f"{a}*{b}"
    return Problem(id=expression, prompt=f"{expression}=", reference=str(a * b), value=Fraction(a * b))


def observation(value: str) -> str:
    """What the calculator environment answers to a call whose value is `value`."""
    return f"{RESULT}{value}{RESULT_END}"


def tool_transcript(problem: Problem, rng: random.Random, tool_rate: float) -> list[tuple[str, bool]]:
    """A correct completion as (text, trained) segments: with probability `tool_rate` through the
    calculator (the observation untrained: it is the environment's), else answered directly."""
    boxed = f"\\boxed{{{problem.reference}}}"
    if rng.random() >= tool_rate:
        return [(boxed, True)]
    call = f"{CALL}{problem.prompt.removesuffix('=')}{CALL_END}"
    return [(call, True), (observation(problem.reference), False), (boxed, True)]
