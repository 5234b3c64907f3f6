"""The `code` task's use of the process sandbox (`grpo_common.sandbox`): its test harness and its policy.

`harness.py` runs inside the sandbox next to the program; `policy.py` says when the task may run programs
at all (isolation available, or the operator's `--allow-unsafe-code`).
"""
