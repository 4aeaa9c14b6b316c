"""Inviting people from the portal: one, or many from a CSV file (email, name, groups).

Each row calls ``enrollment.actions.do_invite``, as ``threshold invite`` does, and gets
its own result; a file that cannot be read at all (not UTF-8, no ``email`` column,
too large) is refused whole, and nothing is invited.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import validate_email

from threshold.accounts.models import User, normalize_username
from threshold.audit.actions import Origin
from threshold.core import errors
from threshold.core.names import DISPLAY_NAME_MAX_LENGTH, clean_name
from threshold.enrollment.actions import do_invite
from threshold.groups.access import get_group
from threshold.groups.actions import do_add_member

# The whole form is capped at 64 KiB (settings.DATA_UPLOAD_MAX_MEMORY_SIZE): about a
# thousand people per file.
MAX_CSV_BYTES = 60 * 1024
MAX_ROWS = 2000
EMAIL_MAX_LENGTH = 150


class ImportRefused(ValueError):
    """The file as a whole cannot be read; nothing was invited."""


@dataclass(frozen=True)
class RowResult:
    line: int
    email: str
    ok: bool
    message: str
    user: User | None = None


def read_upload(upload: UploadedFile | None, text: str) -> str:
    """The CSV's text, from the uploaded file or else the pasted text; ImportRefused."""
    if upload is not None:
        if upload.size is not None and upload.size > MAX_CSV_BYTES:
            raise ImportRefused(f"The file is over {MAX_CSV_BYTES // 1024} KB: split it.")
        data = upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise ImportRefused(f"The file is over {MAX_CSV_BYTES // 1024} KB: split it.")
        try:
            return str(data.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise ImportRefused("The file is not UTF-8 text: save it as CSV UTF-8.") from None
    if not text.strip():
        raise ImportRefused("Choose a CSV file, or paste its lines.")
    return text


def invite_rows(
    content: str, origin: Origin, actor: User, *, may_change_groups: bool = False
) -> list[RowResult]:
    """Invite every row of ``content``; one result per row, in the file's order.

    The ``groups`` column (names separated by ``;``) puts each person in those groups when
    ``may_change_groups``; a group that does not exist is named in the row's result.
    """
    try:
        reader = csv.DictReader(io.StringIO(content, newline=""))
        fields = [name.strip().lower() for name in reader.fieldnames or []]
    except csv.Error as exc:
        raise ImportRefused(f"The file is not CSV: {exc}.") from None
    if "email" not in fields:
        raise ImportRefused(
            "The first line must name the columns: email, name, groups (name and groups are "
            "optional)."
        )
    reader.fieldnames = fields
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise ImportRefused(f"The file is not CSV: {exc}.") from None
    if not rows:
        raise ImportRefused("The file has no one to invite below its first line.")
    if len(rows) > MAX_ROWS:
        raise ImportRefused(f"The file has {len(rows)} rows, at most {MAX_ROWS}: split it.")
    results = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):
        email = (row.get("email") or "").strip()
        name = (row.get("name") or "").strip()
        groups = (row.get("groups") or "").strip()
        key = normalize_username(email)
        if key in seen:
            results.append(RowResult(number, email, False, "Listed earlier in the file."))
            continue
        seen.add(key)
        result = invite_one(email, name, origin, actor, line=number)
        if result.ok and groups and result.user is not None:
            note = (
                _join_groups(result.user, groups, origin, actor)
                if may_change_groups
                else "Groups not applied: your role does not change groups."
            )
            result = RowResult(
                result.line, result.email, True, f"{result.message} {note}", result.user
            )
        results.append(result)
    return results


def _join_groups(user: User, cell: str, origin: Origin, actor: User) -> str:
    """Put ``user`` in each group ``cell`` names (``;``-separated); what happened, in words."""
    joined, unknown = [], []
    for name in dict.fromkeys(part.strip() for part in cell.split(";") if part.strip()):
        group = get_group(name)
        if group is None:
            unknown.append(name)
            continue
        do_add_member(group, user, origin, actor=actor)
        joined.append(group.name)
    words = []
    if joined:
        words.append(f"In {', '.join(joined)}.")
    if unknown:
        words.append(f"No group called {', '.join(repr(name) for name in unknown)}: not added.")
    return " ".join(words)


def _check_row(email: str, name: str) -> str:
    """What is wrong with a row's email and name, or ""."""
    if not email:
        return "Enter an email address."
    try:
        if len(email) > EMAIL_MAX_LENGTH:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        return f"{email!r} is not an email address."
    if name:
        try:
            clean_name(name, DISPLAY_NAME_MAX_LENGTH)
        except errors.NameInvalid as exc:
            return f"The name is not allowed ({exc.detail})."
    return ""


def invite_one(email: str, name: str, origin: Origin, actor: User, *, line: int = 0) -> RowResult:
    """Invite one person (emailed their link); the result says why not when refused."""
    problem = _check_row(email, name)
    if problem:
        return RowResult(line, email, False, problem)
    name = clean_name(name, DISPLAY_NAME_MAX_LENGTH) if name else ""
    try:
        created = do_invite(email, origin, full_name=name, actor=actor)
    except errors.AlreadyEnrolled:
        return RowResult(
            line,
            email,
            False,
            "They can already sign in: not invited (issue a recovery link if they lost every "
            "passkey).",
        )
    except errors.AccountLocked:
        return RowResult(line, email, False, "Their account is locked: not invited.")
    except errors.AccountDisabled:
        return RowResult(line, email, False, "Their account is deactivated: not invited.")
    what = "Invited" if created.user_created else "Invited again (a new link)"
    return RowResult(line, email, True, f"{what}.", created.user)
