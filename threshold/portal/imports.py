"""Inviting people from the portal: one, or many from a CSV file (email, name, groups).

The rows' rules, messages and transactions are ``enrollment/bulk.py``'s, shared with
``threshold users import``; what is the portal's own is the web form's cap: a file of at
most 60 KB and 2,000 rows, read whole (not UTF-8, no ``email`` column, too large: refused
whole, and nothing is invited).
"""

from __future__ import annotations

import io

from django.core.files.uploadedfile import UploadedFile

from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.enrollment.bulk import (
    NOT_UTF8,
    ImportRefused,
    RowResult,
    check_file,
    check_row,
    invite_one,
    read_rows,
)
from threshold.enrollment.bulk import invite_rows as invite_each_row

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_CSV_SIZE",
    "ImportRefused",
    "RowResult",
    "check_row",
    "invite_one",
    "invite_rows",
]

# The whole form is capped at 64 KiB (settings.DATA_UPLOAD_MAX_MEMORY_SIZE): about a
# thousand people per file.
MAX_CSV_BYTES = 60 * 1024
MAX_ROWS = 2000


_KB = 1024


def size_text(size: int) -> str:
    """A number of bytes as people write it: "60 KB", "1.5 MB", "900 bytes" (1 KB is 1,024
    bytes), without the ".0" of Django's filesizeformat ("60.0 KB")."""
    if size < _KB:
        return f"{size} byte{'' if size == 1 else 's'}"
    value, unit = size / _KB, "KB"
    for bigger in ("MB", "GB"):
        if value < _KB:
            break
        value, unit = value / _KB, bigger
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


MAX_CSV_SIZE = size_text(MAX_CSV_BYTES)


def read_upload(upload: UploadedFile | None, text: str) -> str:
    """The CSV's text, from the uploaded file or else the pasted text; ImportRefused."""
    if upload is not None:
        if upload.size is not None and upload.size > MAX_CSV_BYTES:
            raise ImportRefused(f"The file is over {MAX_CSV_SIZE}: split it.")
        data = upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise ImportRefused(f"The file is over {MAX_CSV_SIZE}: split it.")
        try:
            return str(data.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise ImportRefused(NOT_UTF8) from None
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
    count = check_file(io.StringIO(content, newline=""))
    if count > MAX_ROWS:
        raise ImportRefused(f"The file has {count} rows, at most {MAX_ROWS}: split it.")
    rows = read_rows(io.StringIO(content, newline=""))
    return list(invite_each_row(rows, origin, actor, may_change_groups=may_change_groups))
