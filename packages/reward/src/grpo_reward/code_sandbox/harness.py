"""The test runner that runs inside the sandbox, next to the untrusted `solution.py`.

Shipped into the sandbox as a file and run by the sandboxed interpreter (standard library only). It reads
its job from stdin, one JSON object: a random `nonce`, the per-test CPU-time limit `time_limit_s` and the
`tests`, each {"kind": "assert", "expressions": [str, ...]} or {"kind": "io", "input": str}. For each test
it executes the program afresh (asserts: as module "solution", then evaluates each expression in its
namespace; io: as "__main__" with that stdin and a captured stdout) under a per-test CPU-time timer
(ITIMER_PROF, so a loaded machine cannot make a test run out of time), and writes one line per test to the
real stdout as soon as it is known:

    <nonce> {"i": n, "ok": bool, "values": [plain data, ...], "out": str, "error": str}

Nothing here decides a verdict. Expected values and outputs never enter the sandbox: the service compares
each expression's value (serialised as plain data: None, bool, int, float, complex, str, bytes, and lists,
tuples, sets, frozensets and dicts of them; anything else is an error here) and each output itself. So a
program that patches this file's functions, `builtins`, `os.write` or `json.dumps`, reads the nonce from
these frames or returns an object whose `__eq__` is always true can at most change the values it reports,
which it could do anyway by computing them.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys

MAX_DEPTH = 64


class _TestTimeLimit(BaseException):
    """Raised by the CPU-time timer when one test spends its limit."""


class _NotPlainData(Exception):
    """A value the service cannot receive: an object of any other type, or nested too deeply."""


def _on_timer(signum: int, frame: object) -> None:
    raise _TestTimeLimit()


def _plain(value: object, depth: int = 0) -> object:
    """`value` as JSON the service decodes (`grpo_reward.code_sandbox.plain_data`): exact built-in types
    only (a subclass of int is not an int here), containers tagged so that tuples and sets survive."""
    if depth > MAX_DEPTH:
        raise _NotPlainData(f"nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind in (list, tuple, set, frozenset):
        return {kind.__name__: [_plain(item, depth + 1) for item in value]}
    if kind is dict:
        return {"dict": [[_plain(key, depth + 1), _plain(item, depth + 1)] for key, item in value.items()]}
    raise _NotPlainData(f"a {kind.__name__} is not plain data")


def _run(test: dict[str, object], program: object, time_limit_s: float, out_cap: int) -> dict[str, object]:
    stdin = io.TextIOWrapper(io.BytesIO(str(test.get("input", "")).encode()), encoding="utf-8")
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    sys.stdin, sys.stdout = stdin, stdout
    error = ""
    values: list[object] = []
    signal.setitimer(signal.ITIMER_PROF, time_limit_s)
    try:
        namespace = {"__name__": "__main__" if test["kind"] == "io" else "solution"}
        try:
            exec(program, namespace)
        except SystemExit as stop:
            if stop.code not in (None, 0):
                error = f"exit {stop.code}"
        if test["kind"] == "assert" and not error:
            for expression in test["expressions"]:  # type: ignore[attr-defined]
                values.append(_plain(eval(compile(expression, "test", "eval"), namespace)))
    except _TestTimeLimit:
        error = f"CPU time limit {time_limit_s:g} s"
    except BaseException as failure:  # the program's failure is this test's verdict
        error = f"{type(failure).__name__}: {failure}"[:500]
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        sys.stdin, sys.stdout = sys.__stdin__, sys.__stdout__
    out = stdout.buffer.getvalue()[:out_cap].decode("utf-8", "replace")
    return {"ok": not error, "values": values if not error else [], "out": out, "error": error}


def _exit(code: object = None) -> None:
    raise SystemExit(code)


def main() -> None:
    builtins.exit = builtins.quit = _exit  # `python -S` leaves them out; programs call exit() anyway
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    nonce = job.pop("nonce")
    with open("solution.py", encoding="utf-8") as source:
        program = compile(source.read(), "solution.py", "exec")
    signal.signal(signal.SIGPROF, _on_timer)
    tests = job["tests"]
    out_cap = max(1024, job["output_bytes"] // max(1, len(tests)) - 200)
    for number, test in enumerate(tests):
        verdict = {"i": number, **_run(test, program, job["time_limit_s"], out_cap)}
        try:
            line = json.dumps(verdict, ensure_ascii=False)
        except ValueError as error:  # an int too long to print, a circular value
            line = json.dumps({"i": number, "ok": False, "values": [], "out": "", "error": str(error)[:200]})
        os.write(1, f"\n{nonce} {line}\n".encode())


main()
