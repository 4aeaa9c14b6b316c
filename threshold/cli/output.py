"""What the commands print: tables safe for a terminal, framed blocks, shared refusals."""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from threshold.portal.policies import Lockout, NoAdministratorLeft


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\\u202e``), for a terminal.

    Names are checked when they come in (``core/names.py``), but rows written
    before those rules, or by other means, must not move the cursor, recolour the
    terminal (U+009B starts an escape sequence) or reverse what follows (U+202E).
    """
    return "".join(
        character.encode("unicode_escape").decode("ascii")
        if unicodedata.category(character)[0] == "C"
        else character
        for character in text
    )


def table(rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` (the first one the headings) in aligned columns."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def framed(lines: list[str]) -> str:
    """``lines`` between two rules, to stand out among a server's start-up lines."""
    rule = "=" * 72
    return "\n".join([rule, *lines, rule])


def no_account(username: str) -> int:
    print(f"threshold: there is no account {username!r}", file=sys.stderr)
    return 2


def refused_locked(username: str) -> int:
    print(
        f"threshold: {username} is locked: no link was issued. "
        f"`threshold users unlock {username}` first.",
        file=sys.stderr,
    )
    return 1


def refused_no_administrator_left(refused: NoAdministratorLeft) -> int:
    """A change of a person refused because it would leave no administrator who can sign in
    today a way to (``portal.policies``: the admin portal's check), nothing stored: exit 1,
    as ``threshold policy set`` refuses one; ``--force`` makes it anyway."""
    print(
        f"threshold: {printable(str(refused))}\n"
        "To make the change anyway, run the command again with --force.",
        file=sys.stderr,
    )
    return 1


def forced_no_administrator_left(lockout: Lockout, undo: str) -> None:
    """Said after a change made with ``--force`` that left no administrator a way in (nothing
    when it did not): who could sign in before, and ``undo``, the command that undoes it."""
    if lockout.no_administrator_left:
        names = ", ".join(user.username for user in lockout.administrators_cut_off)
        print(
            f"threshold: done with --force: no administrator can sign in now ({printable(names)} "
            f"could). {printable(undo)}",
            file=sys.stderr,
        )
