"""The reward-model process: `python -m grpo_reward.models.model_process SOCKET`, started by RewardModel.

It reads its RewardModelConfig (JSON) from stdin, connects back to SOCKET with the key in the
environment, loads the model and answers each batch of (prompt, completion) pairs with
[(reward | None, truncated, error)] until the connection closes. Only the service talks to it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from multiprocessing.connection import Client, Connection
from pathlib import Path

from grpo_reward.models.config import RewardModelConfig

AUTHKEY_ENV = "GRPO_REWARD_MODEL_AUTHKEY"


def check_labels(config_file: Path) -> None:
    """A local checkpoint whose config.json is not JSON or gives more than one label is refused before
    torch is imported (seconds saved on a mistake); ValueError saying which."""
    if not config_file.is_file():
        return  # a hub id: transformers reads its config
    try:
        raw = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_file} is not readable JSON ({error})") from None
    labels = raw.get("num_labels") or len(raw.get("id2label") or {}) or 1
    if labels != 1:
        raise ValueError(f"has {labels} labels; a reward model has one (its score)")


def serve_model(connection: Connection, config: RewardModelConfig) -> None:
    """The child: load the model, answer ("ready", info), then score each [(prompt, completion)] sent."""
    try:
        check_labels(Path(config.path).expanduser() / "config.json")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from grpo_reward.models.scoring import score_pairs

        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        local = Path(config.path).expanduser().exists()  # else a hub id the operator named
        tokenizer = AutoTokenizer.from_pretrained(config.path, local_files_only=local)
        model = AutoModelForSequenceClassification.from_pretrained(config.path, local_files_only=local)
        if model.config.num_labels != 1:
            raise ValueError(f"has {model.config.num_labels} labels; a reward model has one (its score)")
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id or 0
        model.to(config.device).eval()
    except Exception as error:
        connection.send(("failed", f"{type(error).__name__}: {error}"[:1000]))
        return
    connection.send(("ready", sum(p.numel() for p in model.parameters())))
    while True:
        try:
            pairs = connection.recv()
        except (EOFError, OSError):
            return
        if pairs is None:
            return
        scored = score_pairs(
            model,
            tokenizer,
            pairs,
            max_length=config.max_length,
            batch_size=config.batch_size,
            device=config.device,
        )
        connection.send([(s.reward, s.truncated, s.error) for s in scored])


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the service's to handle
    config = RewardModelConfig.model_validate_json(sys.stdin.read())
    authkey = bytes.fromhex(os.environ.pop(AUTHKEY_ENV))
    with Client(argv[1], family="AF_UNIX", authkey=authkey) as connection:
        serve_model(connection, config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
