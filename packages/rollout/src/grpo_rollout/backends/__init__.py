"""Generation backends: where completions come from.

- `contract`: the `Generator` protocol every backend implements, and the data it exchanges.
- `hf/`: transformers in this process (CPU by default; the reference backend).
- `sglang/`: SGLang servers over HTTP (GPU), launched by the service or already running.
"""
