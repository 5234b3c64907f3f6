"""Kept so `from grpo_common.weight_codec import ...` still works; the codec is `grpo_common.weights`."""

from grpo_common.weights.codec import *  # noqa: F403
from grpo_common.weights.codec import __all__  # noqa: F401
