"""grpo-learner: the GRPO update, the training loop, checkpoints and weight push.

Entry points: `grpo_learner.training.loop.run_training(config, prompts, ...)` (library), `grpo train`
and `grpo plot` (CLI). Each folder's `__init__` says what it holds; the folders are listed in
docs/architecture.md ("Where the code lives").
"""
