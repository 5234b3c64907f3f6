"""CLI help that lists what a registry holds, read from the registry when the help is printed.

A registry's names are only known once its modules are imported (torch, sympy: seconds), so a
subcommand's `epilog` may be a function: `LazyEpilogParser` calls it when, and only when, help is
printed (`add_subparsers(parser_class=LazyEpilogParser)`, then `add_parser(..., epilog=function)`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable


class LazyEpilogParser(argparse.ArgumentParser):
    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def names_line(what: str, names: Iterable[str]) -> str:
    """`what: a, b, c` - one registry's names, sorted, for an epilog."""
    return f"{what}: {', '.join(sorted(names)) or 'none'}"
