"""base64url as WebAuthn's JSON serialisation uses it (RFC 4648 §5): threshold.core.encoding."""

from __future__ import annotations

import base64
import random

import pytest

from threshold.core.encoding import b64url_decode, b64url_encode


@pytest.mark.parametrize("length", range(0, 70))
def test_b64url_round_trips_every_length(length: int) -> None:
    data = random.Random(length).randbytes(length)
    assert b64url_decode(b64url_encode(data)) == data


def test_b64url_encode_uses_the_url_alphabet_without_padding() -> None:
    # 0xfb 0xff encodes to "+/8=" in standard base64.
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_encode(b"") == ""
    assert b64url_encode(b"a") == "YQ"


def test_b64url_encode_matches_the_standard_library_minus_padding() -> None:
    data = bytes(range(256))
    assert b64url_encode(data) == base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("YQ", b"a"),
        ("YQ==", b"a"),
        ("YWI", b"ab"),
        ("YWI=", b"ab"),
        ("YWJj", b"abc"),
        ("-_8", b"\xfb\xff"),
        ("-_8=", b"\xfb\xff"),
        ("", b""),
    ],
)
def test_b64url_decode_accepts_unpadded_and_padded_input(encoded: str, decoded: bytes) -> None:
    assert b64url_decode(encoded) == decoded


@pytest.mark.parametrize(
    "encoded",
    [
        "+_8",  # standard alphabet
        "-/8",
        "+/8=",
        "YW Jj",  # whitespace anywhere
        " YWJj",
        "YWJj ",
        "YWJj\n",
        "YW\tJj",
        "YW  Jj",  # whitespace that a lenient decoder would skip to leave valid base64
        "YWJj\r\n",
        "YWJjZ",  # length % 4 == 1 cannot be base64
        "Y",
        "YWJjZ==",
        "Y=Q",  # padding inside
        "=YQ",
        "YQ===",  # more padding than base64 ever has
        "YWJj.",
        "YWJj!",
        "YWJj%3D",
        "ÿÿÿÿ",  # not ASCII
        "\uff39\uff37\uff2a\uff4a",  # full-width look-alikes of "YWJj"
    ],
)
def test_b64url_decode_refuses_anything_but_base64url(encoded: str) -> None:
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode(encoded)


@pytest.mark.parametrize(
    "value", [b"YWJj", bytearray(b"YWJj"), None, 0, 1.5, ["YWJj"], {"YWJj": 1}, True]
)
def test_b64url_decode_refuses_a_value_that_is_not_a_string(value: object) -> None:
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode(value)
