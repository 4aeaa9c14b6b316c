"""Random strings over an alphabet, from one draw of the CSPRNG.

``django.utils.crypto.get_random_string`` draws once per character (32 calls to
``secrets.choice`` for a session key or a CSRF secret); on the sign-in path that was a
measurable share of a request. ``random_string`` returns the same distribution —
every string of ``length`` characters of ``alphabet`` equally likely — from a single
``secrets.randbelow`` over all of them.
"""

from __future__ import annotations

import secrets
from functools import lru_cache


@lru_cache(maxsize=8)
def _space(alphabet_size: int, length: int) -> int:
    space: int = alphabet_size**length
    return space


def random_string(length: int, alphabet: str) -> str:
    """``length`` characters of ``alphabet``, uniformly at random (as ``get_random_string``)."""
    size = len(alphabet)
    number = secrets.randbelow(_space(size, length))
    characters = []
    for _ in range(length):
        number, index = divmod(number, size)
        characters.append(alphabet[index])
    return "".join(characters)
