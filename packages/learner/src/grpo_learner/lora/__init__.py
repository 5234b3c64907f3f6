"""LoRA adapters on the policy (`[model.lora]`, via peft; the section is `grpo_learner.config.lora`).

    adapters.py        wrap the policy, count parameters, reload adapters, the free reference
    merge.py           `merged_state_dict`: the policy's weights with the adapters folded in, by
                       the base model's names (weight push, `grpo export --merge`)
    merged_weights.py  what a LoRA policy looks like to a rollout service: merged tensors under the
                       base model's names, computed from the state dict without merging the model
    export.py          `grpo export`

Nothing is imported here: each module is imported by name where it is used.
"""
