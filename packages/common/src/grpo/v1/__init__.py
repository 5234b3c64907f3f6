"""Generated from proto/grpo/v1 by proto/generate.py. Do not edit."""
