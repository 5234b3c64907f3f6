"""Linear time before the worker: what the service does to untrusted text in its own process (quick_check:
extraction, then normalisation) costs linear time, so no completion up to the size cap can hold it up.

Each shape below is one that made a step quadratic or exponential: unclosed `\\boxed{` (every opening
rescanned the rest), whitespace after "answer"/"final answer is" (regexes splitting a run of blanks two
ways), unit words after a value (a nested regex quantifier), a bare `\\boxed$` (a slice per box).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpo.v1 import reward_pb2, reward_pb2_grpc
from grpo_reward.check import quick_check
from grpo_reward.extraction import last_boxed
from grpo_reward.limits import DEFAULT_LIMITS
from grpo_reward.normalization import normalize_answer

CAP = DEFAULT_LIMITS.max_completion_chars
# CPU seconds of the calling thread (time.thread_time): the work a check did, which load on a shared
# machine does not inflate as it does wall-clock time. A linear pass over the cap costs a fraction of it;
# the shapes below cost 35 s and more when a step was quadratic.
BUDGET_CPU_S = 1.5
HANG_S = 60  # the deadline of a Score call: only a request that never ends reaches it
TAIL = 19_970  # blanks that fit, with the phrase, in the last 20,000 characters (what phrase forms read)


def _repeat(unit: str, end: str = "") -> str:
    """unit repeated to fill the size cap, then end."""
    return unit * ((CAP - len(end)) // len(unit)) + end


def _tail(shape: str) -> str:
    """A shape in the last 20,000 characters, after a line of filler that fills the cap."""
    return "x" * (CAP - len(shape) - 1) + "\n" + shape


SHAPES: dict[str, Callable[[], str]] = {
    "unclosed_boxes": lambda: _repeat(r"\boxed{"),
    "unclosed_nested_boxes": lambda: _repeat(r"\boxed{{"),
    "box_then_open_braces": lambda: r"\boxed{5}" + _repeat("{", "")[9:],
    "deep_closed_braces": lambda: r"\boxed{" + "{" * (CAP // 2 - 8) + "1" + "}" * (CAP // 2 - 8) + "}",
    "bare_boxes": lambda: _repeat(r"\boxed$"),
    "boxes_with_blanks": lambda: _repeat("\\boxed  \n"),
    "escaped_braces": lambda: _repeat(r"\boxed{\{"),
    "answer_is": lambda: _repeat("the answer is "),
    "empty_answers": lambda: _repeat(". the answer is"),
    "answer_then_blanks": lambda: _tail("answer" + " " * TAIL + "!"),
    "final_answer_then_blanks": lambda: _tail("final answer is x" + " " * TAIL + "y"),
    "final_answer_hopes": lambda: _repeat("final answer is 1 . I hope it is correct "),
    "gsm8k_markers": lambda: _repeat("####"),
    "gsm8k_lines": lambda: _repeat("####   \n"),
    "digits": lambda: _repeat("7"),
    "boxed_digits": lambda: r"\boxed{" + "7" * (CAP - 8) + "}",
    "deep_left": lambda: _repeat(r"\left("),
    "boxed_deep_left": lambda: r"\boxed{" + _repeat(r"\left(", "}")[7:],
    "unit_words_backtracking": lambda: _tail(r"\boxed{1 " + "a" * 3_900 + "!}"),
    "unit_dots_backtracking": lambda: _tail(r"\boxed{1" + "." * 3_900 + "^^}"),
    "degree_blanks": lambda: _tail(r"\boxed{^" + " " * 3_900 + "x}"),
    "overline_digits": lambda: _tail(r"\boxed{" + "1" * 3_990 + "}"),
    "dollars": lambda: _tail(r"\boxed{" + "$" * 3_990 + "}"),
    "mixed": lambda: _repeat(r"\boxed{ the answer is #### \left( {{ 123 $ \fbox "),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_quick_check_is_fast_on_each_shape_at_the_size_cap(name: str) -> None:
    completion = SHAPES[name]()
    assert len(completion) <= CAP
    start = time.thread_time()
    outcome = quick_check(completion, "5", fallback_last_number=True)
    cpu_s = time.thread_time() - start
    assert outcome is not None
    assert cpu_s <= BUDGET_CPU_S, f"{name}: quick_check used {cpu_s:.2f} s of CPU"


def test_last_boxed_finds_the_last_complete_box_before_unclosed_ones() -> None:
    assert last_boxed(r"\boxed{1} and \boxed{2" + r" \boxed{" * 1_000) == "1"
    assert last_boxed(r"\boxed{a \boxed{b} c} \boxed{") == "b"
    assert last_boxed(r"\boxed{\{1\}} \boxed{\}") == r"\{1\}"
    assert last_boxed(r"\boxed{x}" + "{" * 50_000 + r"\boxed{") == "x"
    assert last_boxed(r"\boxed{" * 10_000) is None


def test_normalisation_of_a_long_answer_is_fast() -> None:
    answers = ["1 " + "a" * 3_990 + "!", "1" + "." * 3_990 + "^^", "^" + " " * 3_990 + "x", "$" * 4_000]
    for answer in answers:
        start = time.thread_time()
        normalize_answer(answer)
        assert time.thread_time() - start <= BUDGET_CPU_S, answer[:20]
    assert normalize_answer(r"12 \text{ cm}^2") == "12"  # what the unit automaton is for still works


@pytest.fixture(scope="module")
def stub() -> Iterator[reward_pb2_grpc.RewardServiceStub]:
    """A `grpo-reward serve` process (two workers) and a stub that can send a completion at the cap."""
    command = [sys.executable, "-m", "grpo_reward.cli", "serve", "--port", "0", "--workers", "2"]
    process = subprocess.Popen([*command, "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        announced = next((line for line in process.stdout if "serving on" in line), None)
        assert announced is not None, "grpo-reward serve exited before it was serving"
        options = [("grpc.max_send_message_length", 4 * CAP), ("grpc.max_receive_message_length", 4 * CAP)]
        with grpc.insecure_channel(announced.rsplit(" ", 1)[1].strip(), options=options) as channel:
            yield reward_pb2_grpc.RewardServiceStub(channel)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a server stuck in a regex cannot run its signal handler
            process.kill()
            process.wait()


def _score(stub: reward_pb2_grpc.RewardServiceStub, completion: str, reference: str) -> bool:
    """Whether one Score call of one item was graded correct (a deadline only a hang reaches)."""
    item = reward_pb2.ScoreItem(id="a", completion=completion, reference=reference)
    return stub.Score(reward_pb2.ScoreRequest(items=[item]), timeout=HANG_S).results[0].correct


def test_service_answers_each_shape_while_ordinary_requests_keep_being_answered(
    stub: reward_pb2_grpc.RewardServiceStub,
) -> None:
    """Every shape gets its answer and ordinary requests sent meanwhile keep being graded, each within a
    deadline only a hang reaches; the latencies are `benchmarks/verifier.py`'s to measure."""
    assert _score(stub, r"\boxed{x^2+2x+1}", "(x+1)^2")  # warm: the first sympy item pays for imports
    stopped = threading.Event()
    ordinary: list[bool] = []

    def keep_scoring() -> None:
        while not stopped.is_set():
            ordinary.append(_score(stub, r"so \boxed{x^2+2x+1}", "(x+1)^2"))
            ordinary.append(_score(stub, r"so \boxed{\frac{3}{4}}", "0.75"))

    background = threading.Thread(target=keep_scoring)
    background.start()
    try:
        graded = {name: _score(stub, build(), "5") for name, build in SHAPES.items()}
    finally:
        stopped.set()
        background.join(2 * HANG_S)
    assert sorted(graded) == sorted(SHAPES)  # each shape was answered
    assert len(ordinary) >= len(SHAPES) and all(ordinary)
