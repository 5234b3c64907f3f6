"""Loading a checkpoint's tokenizer exactly as it was saved (shared by rollout and learner).

transformers 5's AutoTokenizer swaps a generic `tokenizer.json` tokenizer for the model type's
own class (a Qwen2-shaped model gets Qwen2Tokenizer, which rebuilds the pre-tokenizer and so
changes the ids of a custom vocabulary). When the checkpoint says its tokenizer is the generic
one, load it as such; otherwise AutoTokenizer is right (real Qwen/Llama checkpoints). The rollout
service and the learner must agree on token ids, so both load through this one function.
Needs `transformers`, which only the packages that run models install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(model: str | Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_file = Path(model) / "tokenizer_config.json"
    if config_file.is_file() and (Path(model) / "tokenizer.json").is_file():
        declared = json.loads(config_file.read_text()).get("tokenizer_class")
        if declared in GENERIC_TOKENIZER_CLASSES:
            return PreTrainedTokenizerFast.from_pretrained(str(model))
    return AutoTokenizer.from_pretrained(str(model), trust_remote_code=trust_remote_code)
