"""Inviting many people from a CSV file (email, name, groups): the one home of its rules.

The admin portal's import (``portal/imports.py``, capped for a web form) and
``threshold users import`` (no cap, any size) both read a file through here:

- ``check_file`` reads the whole file once, keeping nothing, and refuses it whole
  (``ImportRefused``) when it cannot be read at all: not UTF-8, not CSV, no ``email``
  column, no one below its first line. Nothing is invited then.
- ``invite_rows`` then reads it again row by row, lazily: each row is checked, invited with
  ``do_invite`` (as ``threshold invite`` does) and put in its groups in a transaction of its
  own, and its ``RowResult`` is yielded once that transaction committed. A failure at one
  row leaves every row before it invited; re-running the file is safe (someone with a
  pending link gets a fresh one, someone who can sign in already is skipped).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from threshold.accounts import notices
from threshold.accounts.access import get_user, staff_not_theirs
from threshold.accounts.models import User, normalize_username
from threshold.audit.actions import Origin
from threshold.core import errors
from threshold.core.names import DISPLAY_NAME_MAX_LENGTH, clean_name, has_ascii_control
from threshold.enrollment.actions import do_invite
from threshold.enrollment.models import EnrollmentInvite
from threshold.enrollment.notices import link_was_emailed
from threshold.groups.access import get_group
from threshold.groups.actions import do_add_member
from threshold.groups.models import Group

EMAIL_MAX_LENGTH = 150
_USERNAME_MAX_LENGTH = User._meta.get_field("username").max_length or 150
NOT_UTF8 = "The file is not UTF-8 text: save it as CSV UTF-8."
NO_EMAIL_COLUMN = (
    "The first line must name the columns: email, name, groups (name and groups are optional), "
    "separated by commas, semicolons or tabs."
)
NO_ROWS = "The file has no one to invite below its first line."


class ImportRefused(ValueError):
    """The file as a whole cannot be read; nothing was invited."""


class Outcome(StrEnum):
    INVITED = "invited"
    # They can sign in already: nothing to do (a re-run of the same file).
    SKIPPED = "skipped"
    # The row is wrong, or its person may not be invited: the file needs a look.
    REFUSED = "refused"


@dataclass(frozen=True)
class RowResult:
    line: int
    email: str
    outcome: Outcome
    message: str
    user: User | None = None
    # The enrollment link of an invited row: a secret, kept out of reprs and logs.
    link: str = field(default="", repr=False)
    # Some of the row's groups were not applied (unknown, or not the actor's to change).
    groups_missed: bool = False
    # The link's invitation, and whether the email backend took its email (known once the
    # row's transaction committed: ``invite_rows``).
    invite: EnrollmentInvite | None = field(default=None, repr=False, compare=False)
    emailed: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.INVITED


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str
    groups: str


# What separates the columns: a comma, or what a spreadsheet saves "CSV" with where the comma
# is the decimal mark (a semicolon: Excel in much of Europe) or a tab ("Unicode text").
SEPARATORS = (",", ";", "\t")


def _separator(header: str) -> str:
    """The separator the first line names its columns with: the first of ``SEPARATORS`` that
    makes one of them ``email`` (a comma when none does, for the refusal to say so). The
    ``groups`` column's names are separated by ";" too, so a semicolon-separated file quotes
    that cell, as spreadsheets do."""
    for separator in SEPARATORS:
        try:
            names = next(csv.reader([header], delimiter=separator), [])
        except csv.Error:
            continue
        if "email" in (name.strip().lower() for name in names):
            return separator
    return ","


def _blank(row: dict[str | None, object]) -> bool:
    """Whether every cell of a row is empty or spaces: a line a spreadsheet writes for an
    empty row (",,"), which is no one."""
    cells: list[object] = []
    for key, value in row.items():
        cells.extend(value if key is None and isinstance(value, list) else [value])
    return all(not str(cell or "").strip() for cell in cells)


def read_rows(lines: Iterable[str]) -> Iterator[Row]:
    """The rows of a CSV file's ``lines`` (opened with ``newline=""``), one at a time, the
    columns separated by commas, semicolons or tabs (``_separator``); an empty row is
    skipped.

    ``line`` is the line a row ends on, blank lines counted. ImportRefused when the first
    line names no ``email`` column; a ``csv.Error`` or ``UnicodeDecodeError`` from later
    lines reaches the caller (``check_file`` turns them into ImportRefused).
    """
    lines = iter(lines)
    try:
        header = next(lines, "")
    except UnicodeDecodeError:
        raise ImportRefused(NOT_UTF8) from None
    reader = csv.DictReader(
        itertools.chain([header], lines), delimiter=_separator(header.rstrip("\r\n"))
    )
    try:
        fields = [name.strip().lower() for name in reader.fieldnames or []]
    except csv.Error as exc:
        raise ImportRefused(f"The file is not CSV: {exc}.") from None
    except UnicodeDecodeError:
        raise ImportRefused(NOT_UTF8) from None
    if "email" not in fields:
        raise ImportRefused(NO_EMAIL_COLUMN)
    reader.fieldnames = fields
    for row in reader:
        if _blank(row):
            continue
        yield Row(
            reader.line_num,
            (row.get("email") or "").strip(),
            (row.get("name") or "").strip(),
            (row.get("groups") or "").strip(),
        )


def check_file(lines: Iterable[str]) -> int:
    """How many rows ``lines`` holds (empty ones not counted), reading them all and keeping
    none; ImportRefused."""
    count = 0
    try:
        for _ in read_rows(lines):
            count += 1
    except csv.Error as exc:
        raise ImportRefused(f"The file is not CSV: {exc}.") from None
    except UnicodeDecodeError:
        raise ImportRefused(NOT_UTF8) from None
    if not count:
        raise ImportRefused(NO_ROWS)
    return count


def invite_rows(
    rows: Iterable[Row],
    origin: Origin,
    actor: User | None,
    *,
    may_change_groups: bool = False,
    send_email: bool = True,
    dry_run: bool = False,
) -> Iterator[RowResult]:
    """Invite every row, each in its own transaction; one result per row, in order, lazily.

    The ``groups`` column (names separated by ``;``) puts each person in those groups when
    ``may_change_groups``; a group that does not exist is named in the row's result. A
    ``dry_run`` does every row's work and rolls it back: nothing is stored, nobody is
    emailed, and each result says what would have happened.
    """
    # The people seen so far, to refuse a second row for one of them: the only thing kept
    # per row (about 100 bytes each).
    seen: set[str] = set()
    # The invitations' emails share one mail connection (with SMTP: one login for the file).
    with notices.one_connection():
        for row in rows:
            problem = check_row(row.email, row.name)
            if problem:
                yield RowResult(row.line, row.email, Outcome.REFUSED, problem)
                continue
            key = normalize_username(row.email)
            if key in seen:
                yield RowResult(row.line, row.email, Outcome.REFUSED, "Listed earlier in the file.")
                continue
            seen.add(key)
            with transaction.atomic():
                result = _invite_row(row, origin, actor, may_change_groups, send_email)
                if dry_run:
                    transaction.set_rollback(True)
            yield _with_delivery(result) if send_email and not dry_run else result


def _with_delivery(result: RowResult) -> RowResult:
    """``result``, saying whether its email went: sent when the row's transaction committed,
    it is recorded on the invitation (``sent_to``) only if the email backend took it."""
    if result.invite is None:
        return result
    return replace(result, emailed=link_was_emailed(result.invite))


def _invite_row(
    row: Row, origin: Origin, actor: User | None, may_change_groups: bool, send_email: bool
) -> RowResult:
    result = invite_one(row.email, row.name, origin, actor, line=row.line, send_email=send_email)
    if not (result.ok and row.groups and result.user is not None):
        return result
    if may_change_groups:
        note, missed = _join_groups(result.user, row.groups, origin, actor)
    else:
        note, missed = "Groups not applied: your role does not change groups.", True
    return RowResult(
        result.line,
        result.email,
        result.outcome,
        f"{result.message} {note}",
        result.user,
        result.link,
        groups_missed=missed,
        invite=result.invite,
    )


def _join_groups(user: User, cell: str, origin: Origin, actor: User | None) -> tuple[str, bool]:
    """Put ``user`` in each group ``cell`` names (``;``-separated); what happened, in words,
    and whether a group was not found.

    ``user`` was just invited: they have no way to sign in yet (``do_invite`` refuses anyone
    who has one), so no group's rules can cut off an administrator who can sign in here, the
    check ``threshold groups add-member`` and the portal's group page make
    (``portal.policies.add_member``)."""
    joined, unknown = [], []
    for name in dict.fromkeys(part.strip() for part in cell.split(";") if part.strip()):
        group = get_group(name)
        if group is None:
            unknown.append(name)
            continue
        try:
            do_add_member(group, user, origin, actor=actor)
        except Group.DoesNotExist:  # removed meanwhile
            unknown.append(name)
            continue
        joined.append(group.name)
    words = []
    if joined:
        words.append(f"In {', '.join(joined)}.")
    if unknown:
        words.append(f"No group called {', '.join(repr(name) for name in unknown)}: not added.")
    return " ".join(words), bool(unknown)


def check_row(email: str, name: str) -> str:
    """What is wrong with a row's email and name, or ""."""
    if not email:
        return "Enter an email address."
    try:
        # Its stored spelling too (``normalize_username``: NFKC may lengthen it).
        if (
            len(email) > EMAIL_MAX_LENGTH
            or has_ascii_control(email)
            or len(normalize_username(email)) > _USERNAME_MAX_LENGTH
        ):
            # validate_email takes a quoted local part with control characters in it.
            raise ValidationError("too long, or control characters")
        validate_email(email)
        # Django's domain pattern takes any letter from U+00A1 on; the mail the invite goes
        # out in punycodes the domain with IDNA (``sanitize_address``), which refuses what no
        # mailbox can have: bidirectional and other format controls (a look-alike of another
        # address), U+FFFD (a body that was not UTF-8). The local part is ASCII already.
        email.rpartition("@")[2].encode("idna")
    except (ValidationError, UnicodeError):
        return f"{email!r} is not an email address."
    if name:
        try:
            clean_name(name, DISPLAY_NAME_MAX_LENGTH)
        except errors.NameInvalid as exc:
            return f"The name is not allowed ({exc.detail})."
    return ""


def invite_one(
    email: str,
    name: str,
    origin: Origin,
    actor: User | None,
    *,
    line: int = 0,
    send_email: bool = True,
) -> RowResult:
    """Invite one person (emailed their link unless not ``send_email``); the result says why
    not when refused or skipped."""
    problem = check_row(email, name)
    if problem:
        return RowResult(line, email, Outcome.REFUSED, problem)
    staff = _staff_not_theirs(email, actor)
    if staff is not None:
        # A new link for an administrator who has not enrolled, shown to the help desk when
        # email is not delivered (or to its own inbox), would be a way into everything.
        return RowResult(
            line,
            email,
            Outcome.REFUSED,
            f"{staff.display_name} has a role in the admin portal: only an administrator can "
            "invite them.",
        )
    name = clean_name(name, DISPLAY_NAME_MAX_LENGTH) if name else ""
    try:
        created = do_invite(email, origin, full_name=name, actor=actor, send_email=send_email)
    except errors.AlreadyEnrolled:
        return RowResult(
            line,
            email,
            Outcome.SKIPPED,
            "They can already sign in: not invited (issue a recovery link if they lost every "
            "passkey).",
        )
    except errors.AccountLocked:
        return RowResult(line, email, Outcome.REFUSED, "Their account is locked: not invited.")
    except errors.AccountDisabled:
        return RowResult(line, email, Outcome.REFUSED, "Their account is deactivated: not invited.")
    what = "Invited" if created.user_created else "Invited again (a new link)"
    return RowResult(
        line, email, Outcome.INVITED, f"{what}.", created.user, created.link, invite=created.invite
    )


def _staff_not_theirs(email: str, actor: User | None) -> User | None:
    """The member of staff ``email`` names, when ``actor`` may not change them
    (``accounts.access.staff_not_theirs``); the command line, no ``actor``, is an operator's."""
    if actor is None:
        return None
    user = get_user(email)
    return user if user is not None and staff_not_theirs(actor.portal_role, actor, user) else None
