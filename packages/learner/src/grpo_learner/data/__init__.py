"""What the loop trains on: prompts in, scored groups back, the groups admitted to a step.

prompts       the `PromptSource` protocol, JSONL/Parquet loading, the epoch-shuffling cursor
rollout_data  a `grpo.v1.RolloutGroup` converted (and validated) into the learner's `Group`
sources       the `GroupSource` protocol and the per-group admission filter
synthetic     a deterministic in-process group source (tests, benchmarks, no services)
episodes      the statistics a multi-turn episode carries, and its per-step metrics
"""
