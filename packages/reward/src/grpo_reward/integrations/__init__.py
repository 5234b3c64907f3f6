"""The verifier where people already train: TRL reward functions (`grpo_reward.integrations.trl`)."""
