"""An environment as one request uses it: the instance its factory built and the limits of its episodes.

Resolved once per request at the edge (`request_validation.resolve_environments`), so an episode never
looks anything up by name and every check that can fail (unknown name, bad config, a stop string that is
not one token) fails before any generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from grpo_rollout.environments.contract import Environment


@dataclass(frozen=True)
class EpisodeEnvironment:
    name: str
    environment: Environment
    stop_strings: Mapping[int, str]  # the environment's stop strings by their (single) token id
    max_turns: int  # >= 1 (EnvironmentSpec.max_turns, 0 already mapped to the default)
    max_turn_tokens: int  # most tokens of one model turn; 0 = the episode's remaining budget

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.stop_strings))

    def turn_tokens(self, remaining: int) -> int:
        """max_new_tokens of the next model turn: min(max_turn_tokens, remaining budget)."""
        return min(self.max_turn_tokens, remaining) if self.max_turn_tokens else remaining
