"""The embedded preference task: answers that state their units, learned from a reward model.

Each problem restates a quantity: `17 kg=`. Both `17` and `17 kg` are right, and a person prefers
`17 kg`. (The number is copied, not computed, so a tiny model gets it right after a short warm-up and
the run is about the preference alone.) That preference reaches GRPO only through a reward model: a
tiny sequence classifier trained in code on synthetic pairs (chosen `17 kg`; rejected `17`, `17 cm`
or `71 kg`) with the Bradley–Terry loss (grpo_learner.embedded.reward_model), served by the reward
service as `--reward-model prefer=RUN_DIR/reward-model` and used as the run's only reward component.

An independent rule checks the same preference on the held-out prompts: the `regex` task with the
reference `17 kg` (the completion is exactly the right number and the question's unit). The reward model
never sees it; it is what the end table calls the pass rate, beside the model's mean score and the
completion length. The rule asks for the right number too, so a policy that games the reward model
(`2000 kg`: a unit, any number) fails it; the KL penalty to the warm-up model (`loss.beta`) keeps the
policy near the numbers it knew, and the length beside the score shows such drift (a first version
without either, on sums, went from `7` to `2000 kg` while a rule on the unit alone said 100%).

The warm-up writes the unit in `UNIT_RATE` of its transcripts, so the warm model answers with a bare
number when greedy and groups of samples mix both forms: GRPO has a signal from the first step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction

from grpo_learner.embedded.reward_model import PreferencePair
from grpo_learner.embedded.task import Problem

UNITS = ("kg", "cm", "km", "g", "m", "s")
UNIT_RATE = 0.3  # share of the warm-up transcripts that state the unit
RULE_TASK = "regex"  # the independent check: the reward service's built-in regex task


def unit_of(problem: Problem) -> str:
    """The unit the question uses: `17 kg=` -> `kg`."""
    return problem.prompt.rstrip("=").split()[-1]


def unit_problems(seed: int, heldout: int = 200, largest: int = 399) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out): every `n u=` for n in 0..largest and each unit, shuffled by `seed`."""
    problems = [
        Problem(
            id=f"{n}{unit}",
            prompt=f"{n} {unit}=",
            reference=f"{n} {unit}",
            value=Fraction(n),
            task=RULE_TASK,
        )
        for unit in UNITS
        for n in range(largest + 1)
    ]
    random.Random(seed).shuffle(problems)
    return problems[:-heldout], problems[-heldout:]


def unit_transcript(problem: Problem, rng: random.Random, unit_rate: float) -> list[tuple[str, bool]]:
    """A right answer for the warm-up: with the unit in `unit_rate` of them, a bare number otherwise."""
    number = str(problem.value.numerator)
    return [(f"{number} {unit_of(problem)}" if rng.random() < unit_rate else number, True)]


def preference_pairs(problems: Sequence[Problem], rng: random.Random) -> list[PreferencePair]:
    """One pair per problem: the right answer with its unit over the bare number (50%), another unit
    (25%) or a wrong number with the unit (25%: off by 1-9, or ten times too large)."""
    pairs = []
    for problem in problems:
        value, unit = problem.value.numerator, unit_of(problem)
        draw = rng.random()
        if draw < 0.5:
            rejected = str(value)
        elif draw < 0.75:
            rejected = f"{value} {rng.choice([u for u in UNITS if u != unit])}"
        else:
            wrong = (
                value * 10
                if rng.random() < 0.3 or value == 0
                else value + rng.choice([-1, 1]) * rng.randint(1, 9)
            )
            rejected = f"{abs(wrong)} {unit}" if abs(wrong) != value else f"{value + 1} {unit}"
        pairs.append(PreferencePair(problem.prompt, f"{value} {unit}", rejected))
    return pairs
