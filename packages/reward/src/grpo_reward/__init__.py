"""grpo-reward."""
