"""`python -m grpo_learner ...` is `grpo ...`; torchrun starts the learner ranks this way:
`torchrun --nproc-per-node N -m grpo_learner train --config run.toml`."""

import sys

from grpo_learner.cli import main

status = main()
if "torch.distributed" in sys.modules:  # only a rank can have joined a process group
    from grpo_learner.distributed.process_group import launched_distributed
    from grpo_learner.distributed.rank_exit import exit_rank_process

    if launched_distributed():
        exit_rank_process(status)
sys.exit(status)
