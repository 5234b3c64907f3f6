"""Model-based reward terms the operator names at start: `reward_model` (a Hugging Face sequence
classifier, in a process of its own) and `judge` (an OpenAI-compatible chat-completions endpoint with a
rubric). Needs the `grpo-reward[models]` extra (torch, transformers, httpx); nothing here is imported
by the plain verifier."""
