"""The origin a form_post page's CSP form-action names (threshold/sso/responses.py)."""

from __future__ import annotations

import pytest

from threshold.sso.responses import origin_of


@pytest.mark.parametrize(
    ("uri", "origin"),
    [
        ("https://app.example/callback?x=1#f", "https://app.example"),
        ("http://127.0.0.1:9000/callback", "http://127.0.0.1:9000"),
        ("https://App.Example:8443/cb", "https://app.example:8443"),
        ("http://[::1]:8080/cb", "http://[::1]:8080"),
        # A user name and password are no part of an origin, and a CSP source with them is
        # invalid (the browser would drop it and block the form) and would echo the password.
        ("https://u:secret@app.example/cb", "https://app.example"),
    ],
)
def test_the_origin_is_scheme_host_and_port_only(uri, origin):
    assert origin_of(uri) == origin
