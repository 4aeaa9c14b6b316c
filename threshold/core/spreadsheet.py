"""CSV files Threshold writes for people to open: a cell a spreadsheet would run as a formula
(OWASP's CSV injection: one starting with =, +, -, @, a tab or a carriage return) is written
with a leading apostrophe, which spreadsheets show as text.

A spreadsheet that splits lines on semicolons (where the comma is the decimal mark: Excel in
most of Europe) does not read a comma-separated file's quotes as they are meant, and starts a
cell after every semicolon, one inside a quoted cell too: a formula character after a semicolon
(behind spaces or quotes) gets the apostrophe too."""

from __future__ import annotations

import re

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_AFTER_SEMICOLON = re.compile(r';(?=[ "]*[=+\-@\t\r])')


def cell(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs."""
    text = _FORMULA_AFTER_SEMICOLON.sub(";'", text)
    return f"'{text}" if text[:1] in _FORMULA_STARTS else text
