"""Makes common_fixtures.py importable under --import-mode=importlib and exposes its fixtures."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common_fixtures import _no_ambient_token, certificates, serve, stub

__all__ = ["_no_ambient_token", "certificates", "serve", "stub"]
