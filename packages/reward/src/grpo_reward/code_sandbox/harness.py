"""The test runner that runs inside the sandbox, next to the untrusted `solution.py`.

Shipped into the sandbox as a file and run by the sandboxed interpreter (standard library only). It reads
its job from stdin, one JSON object: a random `nonce`, the per-test `time_limit_s` and the `tests`, each
{"kind": "assert", "code": str} or {"kind": "io", "input": str}. For each test it executes the program
afresh (asserts: as module "solution", then the assert code in its namespace; io: as "__main__" with that
stdin and a captured stdout) under a per-test interval timer, and writes one line per test to the real
stdout as soon as it is known: `<nonce> {"i": n, "ok": bool, "out": str, "error": str}`.

The parent compares io outputs itself (expected outputs never enter the sandbox) and counts only lines
that carry the nonce, so a program that exits early, prints fake verdicts or kills the process cannot
pass a test it did not run. Assert tests do run in the program's own interpreter: a program that
deliberately introspects the harness's frames could forge them (see the README's limits).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys


class _TestTimeLimit(BaseException):
    """Raised by the interval timer when one test runs past its time limit."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _TestTimeLimit()


def _run(test: dict[str, str], program: object, time_limit_s: float, out_cap: int) -> tuple[bool, str, str]:
    stdin = io.TextIOWrapper(io.BytesIO(test.get("input", "").encode()), encoding="utf-8")
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    sys.stdin, sys.stdout = stdin, stdout
    error = ""
    signal.setitimer(signal.ITIMER_REAL, time_limit_s)
    try:
        namespace = {"__name__": "__main__" if test["kind"] == "io" else "solution"}
        try:
            exec(program, namespace)
        except SystemExit as stop:
            if stop.code not in (None, 0):
                error = f"exit {stop.code}"
        if test["kind"] == "assert" and not error:
            exec(compile(test["code"], "test", "exec"), namespace)
    except _TestTimeLimit:
        error = f"time limit {time_limit_s} s"
    except BaseException as failure:  # the program's failure is this test's verdict
        error = f"{type(failure).__name__}: {failure}"[:500]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdin, sys.stdout = sys.__stdin__, sys.__stdout__
    out = stdout.buffer.getvalue()[:out_cap].decode("utf-8", "replace")
    return not error, out, error


def _exit(code: object = None) -> None:
    raise SystemExit(code)


def main() -> None:
    builtins.exit = builtins.quit = _exit  # `python -S` leaves them out; programs call exit() anyway
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    nonce = job.pop("nonce")
    with open("solution.py", encoding="utf-8") as source:
        program = compile(source.read(), "solution.py", "exec")
    signal.signal(signal.SIGALRM, _on_alarm)
    tests = job["tests"]
    out_cap = max(1024, job["output_bytes"] // max(1, len(tests)) - 200)
    for number, test in enumerate(tests):
        ok, out, error = _run(test, program, job["time_limit_s"], out_cap)
        line = json.dumps({"i": number, "ok": ok, "out": out, "error": error}, ensure_ascii=False)
        os.write(1, f"\n{nonce} {line}\n".encode())


main()
