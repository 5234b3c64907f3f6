"""The embedded default run: everything `grpo train` needs with no model or dataset named.

A character-level tokenizer and a tiny Qwen2-shaped model built from a config, a synthetic
arithmetic task whose answers the real verifier checks, and a short supervised warm-up so that
GRPO starts from groups with mixed rewards (a cold model gets all-zero rewards, hence no gradient).
"""
