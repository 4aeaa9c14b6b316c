"""``threshold users import FILE``: invite everyone a CSV file lists, in constant memory.

The rows' rules, words and transactions are ``enrollment/bulk.py``'s, as on the admin
portal's import page; this module reads the file (``-``: standard input, spooled to an
unnamed temporary file so that it can be read twice), reports on the terminal and writes
the links where asked. Imported by the handler only: it loads Django.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO, TextIO

from django.db import DatabaseError

from threshold.audit.actions import Origin
from threshold.cli.output import printable
from threshold.core import spreadsheet
from threshold.enrollment.bulk import (
    ImportRefused,
    Outcome,
    Row,
    RowResult,
    check_file,
    invite_rows,
)
from threshold.enrollment.bulk import read_rows as rows_of

# At most this many runs of refused lines in the summary; the rest are in the lines above it.
SUMMARY_RUNS = 40


@dataclass
class Tally:
    invited: int = 0
    skipped: int = 0
    refused: int = 0
    # Invited, but the email backend did not take their email (the mail server failed).
    unsent: int = 0
    last_line: int = 0
    # The refused lines as runs (first, last): a file of 100,000 refusals is 1 run, not 100,000.
    refused_runs: list[list[int]] = field(default_factory=list)

    def count(self, result: RowResult) -> None:
        self.last_line = result.line
        if result.outcome is Outcome.INVITED:
            self.invited += 1
            self.unsent += not result.emailed
        elif result.outcome is Outcome.SKIPPED:
            self.skipped += 1
        else:
            self.refused += 1
            if self.refused_runs and self.refused_runs[-1][1] == result.line - 1:
                self.refused_runs[-1][1] = result.line
            else:
                self.refused_runs.append([result.line, result.line])

    @property
    def rows(self) -> int:
        return self.invited + self.skipped + self.refused

    def refused_lines(self) -> str:
        runs = [str(a) if a == b else f"{a}-{b}" for a, b in self.refused_runs[:SUMMARY_RUNS]]
        more = len(self.refused_runs) - SUMMARY_RUNS
        return ", ".join(runs) + (f" and {more} more runs (listed above)" if more > 0 else "")


def run(args: argparse.Namespace) -> int:
    problem = _problem_with(args)
    if problem:
        return _usage(problem)
    with ExitStack() as stack:
        try:
            binary = stack.enter_context(_opened(args.file))
        except OSError as exc:
            return _usage(f"cannot read {printable(args.file)}: {exc.strerror}")
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        # Hand the file back unclosed: standard input is not ours to close.
        stack.callback(text.detach)
        try:
            total = check_file(text)
        except ImportRefused as exc:
            return _usage(f"{printable(args.file)}: {exc} Nobody was invited.")
        except OSError as exc:  # it opened, but reading failed (a device, a vanished mount)
            return _usage(f"cannot read {printable(args.file)}: {exc.strerror or exc}")
        text.seek(0)
        links = None
        if args.links_out and not args.dry_run:
            try:
                links = stack.enter_context(_private_csv(args.links_out))
            except OSError as exc:
                return _usage(
                    f"cannot create {printable(args.links_out)}: {exc.strerror} (an existing "
                    "file is never overwritten)"
                )
        return _invite(args, rows_of(text), total, links)
    raise AssertionError("unreachable: ExitStack swallows no exception")


def _problem_with(args: argparse.Namespace) -> str:
    if args.no_email and not args.links_out:
        return (
            "--no-email needs --links-out FILE: the links would go nowhere. The links are "
            "secrets, so they are never printed."
        )
    if args.progress < 0:
        return "--progress takes a number of rows, 0 for none"
    return ""


def _invite(args: argparse.Namespace, rows: Iterator[Row], total: int, links: TextIO | None) -> int:
    if links is not None:
        csv.writer(links).writerow(["email", "link"])
    if args.dry_run:
        print("Dry run: every row is checked and rolled back; nothing is stored, nobody emailed.")
    tally = Tally()
    results = invite_rows(
        rows,
        Origin.cli(),
        None,
        may_change_groups=True,
        send_email=not args.no_email,
        dry_run=args.dry_run,
    )
    try:
        for result in results:
            tally.count(result)
            if links is not None and result.ok and result.user is not None:
                csv.writer(links).writerow([spreadsheet.cell(result.user.username), result.link])
                links.flush()
            if not result.ok or result.groups_missed:
                print(
                    f"line {result.line}: {result.outcome}: {printable(result.email)}: "
                    f"{printable(result.message)}"
                )
            if args.progress and tally.rows % args.progress == 0 and tally.rows < total:
                print(f"threshold: {_so_far(tally, total)}", file=sys.stderr, flush=True)
    except DatabaseError as exc:
        _summary(args, tally)
        print(
            f"threshold: the database failed after line {tally.last_line} ({exc}): the rows "
            "up to it are done; run the same file again to finish.",
            file=sys.stderr,
        )
        return 1
    except (csv.Error, UnicodeDecodeError):
        # It read well a moment ago (check_file): someone is writing to it.
        _summary(args, tally)
        print(
            f"threshold: the file changed while it was read, after line {tally.last_line}: "
            "the rows up to it are done; run the file again once it is complete.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        _summary(args, tally)
        print(
            f"threshold: interrupted after line {tally.last_line}: the rows up to it are done; "
            "run the same file again to finish.",
            file=sys.stderr,
        )
        return 130
    _summary(args, tally)
    return 1 if tally.refused else 0


def _so_far(tally: Tally, total: int) -> str:
    return (
        f"{tally.rows} of {total} rows: {tally.invited} invited, {tally.skipped} skipped, "
        f"{tally.refused} refused"
    )


def _summary(args: argparse.Namespace, tally: Tally) -> None:
    verbs = (
        ("would invite", "would skip", "would refuse")
        if args.dry_run
        else ("invited", "skipped", "refused")
    )
    line = (
        f"{verbs[0].capitalize()} {tally.invited}, {verbs[1]} {tally.skipped} (they can sign "
        f"in already), {verbs[2]} {tally.refused}"
    )
    print(line + (f": lines {tally.refused_lines()}." if tally.refused else "."))
    if args.dry_run or not tally.invited:
        return
    where = [] if args.no_email else ["emailed to them"]
    if args.links_out:
        where.append(f"written to {printable(args.links_out)}")
    print(f"Their links were {' and '.join(where)}.")
    if tally.unsent and not args.no_email:
        print(
            f"But {tally.unsent} of the emails could not be sent (the mail server failed: see"
            " the errors above). Run the same file again once it works (they get new links),"
            " or hand over the links from --links-out."
        )


def _usage(message: str) -> int:
    print(f"threshold: {message}", file=sys.stderr)
    return 2


@contextmanager
def _opened(path: str) -> Iterator[IO[bytes]]:
    """The file at ``path`` (``-``: standard input), spooled to a temporary file when it cannot
    be read twice (a pipe)."""
    with ExitStack() as stack:
        source = sys.stdin.buffer if path == "-" else stack.enter_context(open(path, "rb"))
        if source.seekable():
            yield source
            return
        spool = stack.enter_context(tempfile.TemporaryFile())
        shutil.copyfileobj(source, spool)
        spool.seek(0)
        yield spool


@contextmanager
def _private_csv(path: str) -> Iterator[TextIO]:
    """A new file at ``path`` that only its owner can read or write (never an existing one)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w", encoding="utf-8", newline="") as file:
        yield file
