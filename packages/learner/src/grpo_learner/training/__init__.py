"""The training loop and what it is built from: models, the trainer, checkpoints, the team of ranks.

loop              `run_training`: the loop top to bottom (batches in, update, push, checkpoint)
assembly          building a run's parts, the same for one process and each of N ranks
team              what the loop asks of all learner ranks together, and its one-process answer
checkpoint        everything needed to resume exactly, written atomically
models            loading the policy and the frozen reference model
registered_names  every registry name the config holds, checked before a model is loaded
"""
