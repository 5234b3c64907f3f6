"""The learner's side of the rollout services: who is in the pool, spreading prompts, re-sending."""
