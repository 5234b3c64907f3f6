"""grpo-learner: the GRPO update, the training loop, checkpoints and weight push.

Entry points: `grpo_learner.loop.run_training(config, prompts, ...)` (library), `grpo train` and
`grpo plot` (CLI). See packages/learner/README.md for the module map.
"""
