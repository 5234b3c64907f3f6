"""grpo-rollout: turns prompts into scored groups for GRPO, and takes new weights between groups.

- `generator`: the Generator protocol both backends implement, and its dataclasses.
- `hf_generator`: transformers on CPU (the default and the reference); `sampling`: its token choice.
- `sglang_generator` (+ `sglang_http`, `sglang_payloads`, `sglang_weight_group`, `sglang_launcher`,
  `model_facts`): SGLang on GPU.
- `service`: RolloutService (Generate / UpdateWeights / GetInfo); `request_validation`,
  `prompt_encoding`, `reward_client`, `group_assembly`: its parts; `version_gate`: updates between groups.
- `config`, `app`, `cli`: `grpo-rollout serve`.
"""
