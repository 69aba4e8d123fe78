"""Command lines with trailing `KEY VALUE` config overrides in which the tool's own flags may stand anywhere.

    parser = FlagsAnywhereParser(description=...)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    parser.parse_args(["--config-file", "c.yaml", "SOLVER.MAX_ITER", "10", "--resume"])  # resume=True, opts=[...]

`argparse.REMAINDER` swallows everything after the first override, so a flag typed after them would become an
override ("unknown config key '--resume'"). This parser first moves every token that is one of its option strings
(`--flag`, `--flag=value`, `--flag value`, or `--flag v1 v2 ...` up to the next option for `nargs="+"`) to the front,
keeping the order of the rest, so overrides stay paired.
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
            action = self._own_action(tokens[position])
            if action is None:
                rest.append(tokens[position])
                position += 1
                continue
            end = position + 1 + self._value_count(action, tokens, position + 1)
            flags.extend(tokens[position:end])
            position = end
        return flags + rest

    def _own_action(self, token: str) -> argparse.Action | None:
        if not token.startswith("-"):
            return None
        name, has_inline_value, _ = token.partition("=")
        action = self._option_string_actions.get(name)
        return None if action is None or (has_inline_value and action.nargs == 0) else action

    def _value_count(self, action: argparse.Action, tokens: list[str], start: int) -> int:
        """How many tokens from `start` are the option's values (none when given inline as `--flag=value`)."""
        if "=" in tokens[start - 1]:
            return 0
        if action.nargs is None:
            return 1
        if action.nargs == argparse.OPTIONAL:
            return int(start < len(tokens) and self._own_action(tokens[start]) is None)
        if isinstance(action.nargs, int):
            return action.nargs
        count = 0  # "+" / "*": as argparse, every following token up to the next option
        while start + count < len(tokens) and self._own_action(tokens[start + count]) is None:
            count += 1
        return count
