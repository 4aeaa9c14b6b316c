"""The ``threshold`` command's subcommands: one module per group, each a small registration.

The convention, which every module here follows:

- A module defines ``register(commands: Subcommands) -> list[Command]``. It adds its
  subcommands to the ``threshold`` parser's subparsers (``commands.add_parser(...)``) and
  returns a ``Command`` for every parser that runs something when the arguments end there:
  the parser and its handler. A group such as ``users`` has one for ``threshold users``
  and one for each of its own subcommands (``users lock``, ``users unlock``).
- A handler takes the parsed arguments and returns the exit status (0 done, 1 refused,
  2 usage error). It imports what it uses inside the function: ``--help`` and
  ``threshold inspect`` load neither Django nor the database.

``threshold.cli.main`` calls the registrations in order (the order of ``threshold --help``),
gives each Command's parser the Command as a default, and runs the Command that the parsed
arguments carry; any other first word is one of Django's management commands
(``management.py``). ``tests/unit/test_cli_commands.py`` checks that every parser has a
Command of its own and that every Command's parser can be reached from ``threshold``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

Handler: TypeAlias = Callable[[argparse.Namespace], int]
# What argparse's add_subparsers() returns (typeshed's name for it is private).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # noqa: SLF001
Registration: TypeAlias = Callable[[Subcommands], list["Command"]]


@dataclass(frozen=True)
class Command:
    """What runs when the arguments end at ``parser``."""

    parser: argparse.ArgumentParser
    handle: Handler
    # False for commands of the plain core (inspect): no settings, no database.
    needs_django: bool = True


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``, else a usage error (exit
    2) rather than a database error for a count no query can take."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value

    return parse
