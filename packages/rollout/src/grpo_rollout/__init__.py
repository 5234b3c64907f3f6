"""grpo-rollout."""
