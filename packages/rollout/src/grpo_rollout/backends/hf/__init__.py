"""The transformers backend: a causal LM sampled in this process (`generator`)."""
