"""The sign-in page is small on the wire, loads nothing from elsewhere, and its files are cached."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.test import Client

import threshold
from threshold.web.http import (
    SET_UP_CATALOG,
    SET_UP_ENTRIES,
    SIGN_IN_CATALOG,
    SIGN_IN_ENTRIES,
)

pytestmark = pytest.mark.django_db

# Bytes on the wire: the page with everything it loads.
BUDGET = 15_000
YEAR = 365 * 24 * 60 * 60
# What a browser sends: it takes compressed answers.
BROWSER = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br, zstd", "HTTP_HOST": "localhost:8000"}


def body_of(response) -> bytes:
    # Reading a file's response to the end closes it (Django's test client does).
    return b"".join(response.streaming_content) if response.streaming else response.content


def on_the_wire(response) -> int:
    """Status line, headers and body, as sent."""
    body = body_of(response)
    head = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in response.items())
    head += "".join(
        f"Set-Cookie: {c.output(header='').strip()}\r\n" for c in response.cookies.values()
    )
    return len(head.encode()) + 2 + len(body)


def loaded_by(html: str) -> list[str]:
    """The URLs a page makes the browser fetch: scripts, stylesheets, images, icons, frames."""
    return re.findall(r'<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)="([^"]+)"', html)


def test_the_sign_in_page_with_everything_it_loads_fits_the_budget():
    client = Client(**BROWSER)
    page = client.get("/sign-in")
    assert page.status_code == 200
    total = on_the_wire(page)
    fetched = [url for url in loaded_by(page.content.decode()) if not url.startswith("data:")]
    assert len(fetched) == 2, fetched  # the stylesheet and webauthn.js
    for url in fetched:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset["Content-Encoding"] == "br", url  # Brotli, smaller than gzip
        total += on_the_wire(asset)
    print(f"sign-in page on the wire: {total} bytes")
    assert total <= BUDGET, f"{total} bytes"


def test_the_sign_in_page_loads_nothing_from_elsewhere():
    client = Client(**BROWSER)
    html = Client().get("/sign-in", HTTP_HOST="localhost:8000").content.decode()
    for url in loaded_by(html):
        assert url.startswith(("/", "data:")), url
        assert not url.startswith("//"), url
    stylesheet = next(url for url in loaded_by(html) if url.endswith(".css"))
    css = body_of(Client().get(stylesheet, HTTP_HOST="localhost:8000"))
    assert b"@import" not in css
    assert not re.search(rb"url\(\s*['\"]?(https?:)?//", css)
    assert client.get("/sign-in")["Content-Security-Policy"]


def test_static_files_have_content_hashed_names_cached_for_a_year():
    client = Client(**BROWSER)
    html = client.get("/sign-in").content.decode()
    for url in loaded_by(html):
        if url.startswith("data:"):
            continue
        assert re.search(r"\.[0-9a-f]{12}\.(css|js)$", url), url
        asset = client.get(url)
        body_of(asset)
        cache = asset["Cache-Control"]
        assert "immutable" in cache, cache
        max_age = int(re.search(r"max-age=(\d+)", cache).group(1))
        assert max_age >= YEAR, cache


def test_the_pages_catalog_is_what_the_script_shows_on_its_own():
    """A page carries only the entries webauthn.js can show without the server for its
    ceremony (the server's failures carry their own): they are most of the sign-in page's
    weight. Where the script picks one by `registering`, the first is a set-up's own."""
    script = (Path(threshold.__file__).parent / "web/static/threshold/webauthn.js").read_text()
    used = set(re.findall(r"catalog\.(\w+)", script))
    for inside in re.findall(r"catalog\[([^\]]*)\]", script):
        used |= set(re.findall(r'"(\w+)"', inside))
    assert used == set(SIGN_IN_ENTRIES) | set(SET_UP_ENTRIES)
    assert set(SIGN_IN_CATALOG) == set(SIGN_IN_ENTRIES)
    assert set(SET_UP_CATALOG) == set(SET_UP_ENTRIES)
    chosen = re.findall(r'registering \? "(\w+)" : "(\w+)"', script)
    assert len(chosen) >= 3, chosen
    for set_up, sign_in in chosen:
        assert set_up in set(SET_UP_ENTRIES) - set(SIGN_IN_ENTRIES), set_up
        assert sign_in in set(SIGN_IN_ENTRIES) - set(SET_UP_ENTRIES), sign_in
    assert "if (context.registering) return catalog.setup_canceled;" in script
    assert "setup_canceled" in SET_UP_ENTRIES


def test_the_sign_in_page_carries_the_sign_in_entries():
    html = Client().get("/sign-in", HTTP_HOST="localhost:8000").content.decode()
    block = re.search(r'<script id="threshold-catalog"[^>]*>(.*?)</script>', html)
    assert block
    assert set(json.loads(block.group(1))) == set(SIGN_IN_ENTRIES)
