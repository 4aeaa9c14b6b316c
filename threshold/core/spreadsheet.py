"""CSV files Threshold writes for people to open: a cell a spreadsheet would run as a formula
(OWASP's CSV injection: one starting with =, +, -, @, a tab or a carriage return) is written
with a leading apostrophe, which spreadsheets show as text."""

from __future__ import annotations

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs."""
    return f"'{text}" if text[:1] in _FORMULA_STARTS else text
