"""grpo-rollout: turns prompts into scored groups for GRPO, and takes new weights between groups.

- `backends/`: generation backends. `contract`: the Generator protocol every backend implements, and its
  dataclasses; `hf/`: transformers on CPU (the default and the reference); `sglang/`: SGLang on GPU
  (`generator` + `http`, `payloads`, `weight_group`, `distributed`, `lora`, `launcher`, `fleet`,
  `model_facts`). `sampling`: hf's token choice and the greedy threshold every backend shares.
- `service`: RolloutService (Generate / UpdateWeights / GetInfo); `request_validation`,
  `prompt_encoding`, `reward_client`, `group_assembly`: its parts; `version_gate`: updates between groups.
- `config/`: the typed configuration, one module per section (no torch); `app`, `cli`: `grpo-rollout serve`.
"""
