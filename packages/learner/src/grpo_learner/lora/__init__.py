"""LoRA adapters on the policy (`[model.lora]`, via peft; the section is `grpo_learner.config.lora`).

    adapters.py        wrap the policy, count parameters, reload adapters, the free reference
    merge.py           `merged_state_dict`: the policy's weights with the adapters folded in, by
                       the base model's names (weight push, `grpo export --merge`)
    export.py          `grpo export`

Nothing is imported here: each module is imported by name where it is used.
"""
