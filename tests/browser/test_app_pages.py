"""The pages single sign-on adds, at a desktop's and a phone's width: they fit and are accessible.

Home's "My apps", Settings' "Apps you're signed in to", an app's consent page, "Sign in again"
(prompt=login), "You don't have access to APP" and a form_post answer's "Continue to APP",
audited as the first day's pages are (``test_first_day.PageAudit``: layout, axe-core, headings,
one link style and focus ring). The end-to-end flows with a real relying party are the
test_sso_* files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Authenticator, Invite, Server, enroll
from tests.browser.test_first_day import VIEWPORTS, PageAudit

pytestmark = pytest.mark.browser

REDIRECT_URI = "http://127.0.0.1:9/callback"


def authorize_path(client_id: str, **extra: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email groups",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
        **extra,
    }
    return "/authorize?" + urlencode(query)


def add_app(server: Server, name: str, *options: str) -> str:
    out = server.cli("apps", "add", name, "--redirect-uri", REDIRECT_URI, *options, "--json")
    return str(json.loads(out)["client_id"])


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_app_pages_fit_and_pass_axe(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite, viewport: str
) -> None:
    page.set_viewport_size(VIEWPORTS[viewport])
    audit = PageAudit(page)
    suffix = secrets.token_hex(3)
    wiki = add_app(
        server,
        f"Wiki {suffix}",
        "--require-consent",
        "--initiate-login-uri",
        "https://wiki.example/",
    )
    ledger = add_app(server, f"Ledger {suffix}")
    notes = add_app(server, f"Notes {suffix}")
    server.cli("groups", "add", f"Finance {suffix}")
    server.cli("apps", "assign", ledger, "--group", f"Finance {suffix}")
    person = invite()
    enroll(page, person)

    expect(page.get_by_role("heading", name="My apps")).to_be_visible()
    expect(page.get_by_role("link", name=f"Wiki {suffix}")).to_be_visible()
    audit.check("home with my apps")

    page.goto(authorize_path(wiki))
    expect(page.get_by_role("button", name="Allow", exact=True)).to_be_visible()
    audit.check("consent")

    page.goto(authorize_path(ledger))
    expect(
        page.get_by_role("heading", name=f"You don't have access to Ledger {suffix}")
    ).to_be_visible()
    audit.check("no access")

    page.goto(authorize_path(wiki, prompt="login"))
    expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_visible()
    audit.check("sign in again")

    # As a browser without JavaScript shows it: its script would send the form at once.
    page.route("**/threshold/form-post*.js", lambda route: route.abort())
    page.goto(authorize_path(notes, response_mode="form_post"))
    expect(page.get_by_role("heading", name=f"Continue to Notes {suffix}")).to_be_visible()
    expect(page.get_by_role("button", name="Continue", exact=True)).to_be_visible()
    audit.check("form post")

    audit.assert_clean()
