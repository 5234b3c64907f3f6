"""What the learner and the reward service agree on about a `grpo.v1.RewardSpec`, declared once.

The built-in terms' names (their implementations are registered on the reward side, in
`grpo_reward.terms.TERMS`, whose names a test checks against these), the v1.0 spec field that carries
each one's weight, and the longest per-item scoring time a spec may ask for. The learner, which does
not depend on the reward package, validates its `[reward]` section against these.
"""

from __future__ import annotations

CORRECTNESS, FORMAT, LENGTH = "correctness", "format", "length"
BUILT_IN_TERMS = (CORRECTNESS, FORMAT, LENGTH)

# v1.0 RewardSpec: one weight field per built-in term (a v1.1 spec lists `components` instead).
V1_WEIGHT_FIELDS = {CORRECTNESS: "correctness_weight", FORMAT: "format_weight", LENGTH: "length_weight"}

MAX_SCORE_TIMEOUT_S = 10.0  # RewardSpec.timeout_s: the per-item CPU-time limit a request may set
