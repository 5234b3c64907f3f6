"""The learner on several processes: torchrun, FSDP2, rank 0 leading the others."""
