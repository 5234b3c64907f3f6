"""`python -m grpo_learner ...` is `grpo ...`; torchrun starts the learner ranks this way:
`torchrun --nproc-per-node N -m grpo_learner train --config run.toml`."""

import sys

from grpo_learner.cli import main

sys.exit(main())
