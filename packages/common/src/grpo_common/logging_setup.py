"""One logging format for every service, so interleaved logs of several processes stay readable."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def configure_logging(level: str | int = "INFO") -> None:
    """Send records to stderr (stdout is kept for a CLI's results). Safe to call more than once."""
    root = logging.getLogger()
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for handler in list(root.handlers):
        if getattr(handler, "_grpo_handler", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler._grpo_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
