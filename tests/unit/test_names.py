"""Nicknames and display names: what may be stored and shown."""

from __future__ import annotations

import pytest

from threshold.core import errors
from threshold.core.names import NICKNAME_MAX_LENGTH, clean_name, is_text


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("YubiKey 5C", "YubiKey 5C"),
        ("  Work   laptop\n", "Work laptop"),
        ("Ada's & Bob's key", "Ada's & Bob's key"),
        ("Cafe\u0301 phone", "Caf\u00e9 phone"),  # NFC
        ("钥匙 🔑", "钥匙 🔑"),
        ("x" * NICKNAME_MAX_LENGTH, "x" * NICKNAME_MAX_LENGTH),
    ],
)
def test_good_names_are_normalised(given, stored):
    assert clean_name(given, NICKNAME_MAX_LENGTH) == stored


@pytest.mark.parametrize(
    "given",
    [
        None,
        42,
        ["a"],
        "",
        " \t\n ",
        "x" * (NICKNAME_MAX_LENGTH + 1),
        "<b>bold</b>",
        "a > b",
        "safe\u202eexe.gnp",  # right-to-left override
        "zero\u200bwidth",  # format character
        "bell\x07",
        "nul\x00",
        "private\ue000use",
        "\ufffd\ufffd\u00ff",  # a form field that was not UTF-8
        "lone \ud800 surrogate",  # JSON can escape one; no encoder takes it
        "\udcff@example.com",  # what Python makes of a command-line byte that is not UTF-8
    ],
)
def test_bad_names_are_refused(given):
    with pytest.raises(errors.NameInvalid):
        clean_name(given, NICKNAME_MAX_LENGTH)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("ada", True), ("\U0001f511 key", True), ("\ud83d\udd11", False), ("a\udfff", False)],
)
def test_is_text(value, expected):
    assert is_text(value) is expected
