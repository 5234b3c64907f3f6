"""grpo-common."""
