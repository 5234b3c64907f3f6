"""Generation backends: where completions come from.

- `registry`: `GENERATORS`, the backends by name, each with its default limits and a `build`.
- `contract`: the `Generator` protocol every backend implements, and the data it exchanges.
- `hf/`: transformers in this process (CPU by default; the reference backend).
- `sglang/`: SGLang servers over HTTP (GPU), launched by the service or already running.

Importing this package registers the built-in backends (their `backend` modules import no torch).
"""

from grpo_rollout.backends.hf import backend as _hf  # noqa: F401  registers "hf"
from grpo_rollout.backends.sglang import backend as _sglang  # noqa: F401  registers "sglang"
