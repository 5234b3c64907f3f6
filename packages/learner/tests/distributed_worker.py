"""One learner rank for the distributed tests, training on deterministic synthetic groups.

Launched by the tests under `python -m torch.distributed.run` (or as plain processes with the
torchrun environment set by hand). Rank 0's group source is `SyntheticGroupSource`, so no rollout
service is needed; the other ranks get the groups from rank 0 like in a real run.

    python distributed_worker.py CONFIG.json [--crash-at-step N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from grpo_common.logging_setup import configure_logging
from grpo_learner.config import LearnerConfig
from grpo_learner.data.sources import StepBatch
from grpo_learner.data.synthetic import SyntheticGroupSource
from grpo_learner.distributed.process_group import RankFailure
from grpo_learner.distributed.rank_exit import exit_rank_process
from grpo_learner.training.loop import run_training

SOURCE_SEED = 5
RANK = os.environ.get("RANK", "0")


@dataclass
class CrashingSource(SyntheticGroupSource):
    """Rank 0's source fails when asked for step `crash_at`: a learner crash mid-run."""

    crash_at: int = -1

    async def next_batch(self, step: int, policy_version: int) -> StepBatch:
        if step == self.crash_at:
            raise RuntimeError(f"simulated learner crash at step {step}")
        return await super().next_batch(step, policy_version)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--crash-at-step", type=int, default=-1, help="rank 0's source fails there")
    args = parser.parse_args()
    torch.set_num_threads(1)
    configure_logging("INFO")
    config = LearnerConfig.model_validate(json.loads(args.config.read_text()))
    try:
        source = CrashingSource(seed=SOURCE_SEED, crash_at=args.crash_at_step)
        state = asyncio.run(run_training(config, source=source, progress=False))
    except ValueError as exc:  # like `grpo train`: a bad setting or checkpoint is a message, exit 2
        print(f"rank {RANK}: {exc}", file=sys.stderr)
        return 2
    except RankFailure as exc:  # like `grpo train`: the other ranks' fate as one message
        print(f"{exc}", file=sys.stderr)
        return 1
    print(json.dumps({"rank": int(RANK), "step": state.step}))
    return 0


if __name__ == "__main__":
    exit_rank_process(main())  # like `python -m grpo_learner` under torchrun
