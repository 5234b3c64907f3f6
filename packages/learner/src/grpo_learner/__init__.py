"""grpo-learner."""
