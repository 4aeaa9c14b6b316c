"""The catalog's backticked commands render as <code> on pages, everything else escaped."""

from __future__ import annotations

import pytest

from threshold.web.templatetags.catalog_text import code_spans


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (
            "Send a new link with `threshold invite EMAIL`.",
            "Send a new link with <code>threshold invite EMAIL</code>.",
        ),
        ("`a` and `b`", "<code>a</code> and <code>b</code>"),
        ("no code here", "no code here"),
        ("<b>`<i>`</b>", "&lt;b&gt;<code>&lt;i&gt;</code>&lt;/b&gt;"),
        ("one ` alone", "one ` alone"),
        ("", ""),
    ],
)
def test_backticked_spans_are_code_and_the_rest_is_escaped(text: str, html: str) -> None:
    assert str(code_spans(text)) == html
