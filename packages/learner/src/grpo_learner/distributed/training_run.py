"""The part of a run that differs on several learner processes (torchrun): who leads, who follows.

    all ranks:  join the process group -> build and shard the trainer, resume from DCP shards
                (assembly.build_trainer / resume_state, the same calls as one process makes)
    rank 0:     the ordinary loop (loop.drive_training), with a LeaderTeam that sends every update,
                weight gather and checkpoint to the other ranks
    others:     follow_leader: wait for rank 0's commands and do the collective part of each

A failure anywhere ends the job with a message: rank 0 tells the followers (ABORT) when it can; a
dead rank makes the others' next collective fail or time out (distributed.timeout_s).
"""

from __future__ import annotations

from typing import Any

from grpo_learner.config import LearnerConfig
from grpo_learner.distributed.fsdp import FsdpParallel
from grpo_learner.distributed.leader_team import CommandLink, LeaderTeam, RankWork, follow_leader
from grpo_learner.distributed.process_group import Ranks
from grpo_learner.grpo.update import Trainer
from grpo_learner.training.checkpoint import TrainerState
from grpo_learner.training.team import SingleProcessTeam, TrainingTeam


def _work(trainer: Trainer, ranks: Ranks, config: LearnerConfig) -> RankWork:
    if not isinstance(trainer.parallel, FsdpParallel):
        raise TypeError("a trainer for several ranks is built with ranks (assembly.build_trainer)")
    return RankWork(trainer, trainer.parallel, ranks, config.checkpoint_dir)


def training_team(
    trainer: Trainer, ranks: Ranks | None, config: LearnerConfig, tokenizer: Any
) -> TrainingTeam:
    """What the loop on rank 0 (or the only process) does every collective step through."""
    if ranks is None:
        return SingleProcessTeam(trainer, config.checkpoint_dir, config.checkpoint.keep_last, tokenizer)
    team = LeaderTeam(
        _work(trainer, ranks, config),
        CommandLink(ranks),
        keep_last=config.checkpoint.keep_last,
        tokenizer=tokenizer,
    )
    team.start()
    return team


def follow(trainer: Trainer, ranks: Ranks, config: LearnerConfig) -> TrainerState:
    """A follower's whole run: rank 0's commands until DONE; returns rank 0's final state."""
    return follow_leader(_work(trainer, ranks, config), CommandLink(ranks))
