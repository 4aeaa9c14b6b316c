"""Names people give things: a passkey's nickname, their own display name.

They are shown on pages, in emails and, through the WebAuthn Signal API, in
password managers, so the rules are stricter than HTML escaping alone needs:
no markup characters, no control or text-direction characters (which can make
a name read differently from what it is), Unicode normalised (NFC).
"""

from __future__ import annotations

import unicodedata

from threshold.core import errors

NICKNAME_MAX_LENGTH = 60
DISPLAY_NAME_MAX_LENGTH = 100

_MARKUP = frozenset("<>")


def is_text(value: str) -> bool:
    """Whether ``value`` can be stored and sent as UTF-8.

    A Python str may hold a lone UTF-16 surrogate (U+D800-U+DFFF): JSON can
    escape one ("\\ud800"), and Python decodes undecodable command-line bytes
    to them. No encoder accepts it, so the database would fail on it.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_ascii_control(value: str) -> bool:
    """Whether ``value`` holds an ASCII control character (U+0000-U+001F or DEL)."""
    return any(character < " " or character == "\x7f" for character in value)


def clean_name(value: object, max_length: int) -> str:
    """``value`` as a name to store, or NameInvalid saying why not."""
    if not isinstance(value, str):
        raise errors.NameInvalid("not text")
    if not is_text(value):
        raise errors.NameInvalid("a lone UTF-16 surrogate")
    name = " ".join(unicodedata.normalize("NFC", value).split())
    if not name:
        raise errors.NameInvalid("empty")
    if len(name) > max_length:
        raise errors.NameInvalid(f"{len(name)} characters, at most {max_length}")
    if _MARKUP.intersection(name):
        raise errors.NameInvalid("markup characters")
    # Cc: control, Cf: format (bidi overrides and isolates, zero-width joiners),
    # Co/Cs/Cn: private use, surrogates, unassigned.
    if any(unicodedata.category(character)[0] == "C" for character in name):
        raise errors.NameInvalid("control or format characters")
    # What a form field that was not UTF-8 decodes to.
    if "\ufffd" in name:
        raise errors.NameInvalid("not valid text")
    return name
