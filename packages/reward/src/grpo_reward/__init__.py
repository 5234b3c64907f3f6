"""grpo-reward: a safe, fast sympy-based math answer verifier (library, CLI and gRPC RewardService).

from grpo_reward import verify, Verifier
verify(r"... so the answer is $\\boxed{\\frac{3}{4}}$", "0.75").correct  # True
"""

from grpo_reward.verdict import Verdict
from grpo_reward.verifier import Verifier, score_batch, verify

__all__ = ["Verdict", "Verifier", "score_batch", "verify"]
