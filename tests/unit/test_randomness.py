"""``random_string``: get_random_string's distribution from one draw of the CSPRNG."""

from __future__ import annotations

from collections import Counter

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH

from threshold.core.randomness import random_string


def test_strings_have_the_length_and_only_the_alphabets_characters() -> None:
    for alphabet, length in ((VALID_KEY_CHARS, 32), (CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH)):
        drawn = {random_string(length, alphabet) for _ in range(200)}
        assert len(drawn) == 200  # 200 distinct strings: nothing repeats
        for text in drawn:
            assert len(text) == length
            assert set(text) <= set(alphabet)


def test_every_character_is_as_likely_at_every_position() -> None:
    # 36 characters, 7,200 strings: each character is expected 200 times per position.
    # Bounds at about ±5 standard deviations (sd ≈ 14): a uniform draw never leaves them,
    # a draw that favoured some characters (a modulo bias, a missing character) does.
    strings = [random_string(32, VALID_KEY_CHARS) for _ in range(7_200)]
    for position in (0, 15, 31):
        counts = Counter(text[position] for text in strings)
        assert set(counts) == set(VALID_KEY_CHARS)
        assert all(130 <= count <= 270 for count in counts.values()), counts
