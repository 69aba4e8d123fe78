"""Command lines with trailing `KEY VALUE` config overrides in which the tool's own flags may stand anywhere.

    parser = FlagsAnywhereParser(description=...)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    parser.parse_args(["--config-file", "c.yaml", "SOLVER.MAX_ITER", "10", "--resume"])  # resume=True, opts=[...]

`argparse.REMAINDER` swallows everything after the first override, so a flag typed after them would become an
override ("unknown config key '--resume'"). This parser first moves every token that is one of its option strings
(`--flag`, `--flag=value` or `--flag value` for options taking a value) to the front, keeping the order of the rest,
so overrides stay paired.
"""

from __future__ import annotations

import argparse
import sys


class FlagsAnywhereParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` that accepts its own flags before, between or after the overrides."""

    def parse_known_args(self, args=None, namespace=None):
        tokens = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self.own_flags_first(tokens), namespace)

    def own_flags_first(self, tokens: list[str]) -> list[str]:
        """`tokens` with this parser's options (and their values) moved to the front, the rest in order."""
        flags, rest, position = [], [], 0
        while position < len(tokens):
            token = tokens[position]
            name, has_inline_value, _ = token.partition("=")
            action = self._option_string_actions.get(name) if token.startswith("-") else None
            if action is None or (has_inline_value and action.nargs == 0):
                rest.append(token)
                position += 1
                continue
            takes_value = action.nargs is None and not has_inline_value
            flags.extend(tokens[position:position + 1 + int(takes_value)])
            position += 1 + int(takes_value)
        return flags + rest
