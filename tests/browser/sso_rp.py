"""A strict relying party for the single sign-on tests: tests/rp/server.mjs, in Node.

The app is openid-client 6 (a certified OpenID Connect relying party) and jose; no Threshold
code is in it. Each test process starts it once on 127.0.0.1 (conftest's relying_party);
each test registers its own app with `threshold apps add ... --json` and tells the relying
party the client ID and secret. The browser signs in through the relying party's
/login/NAME; what the relying party received (claims, userinfo, errors) is read back as JSON.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import RelyingParty, Server

SIGN_IN_BUTTON = "Sign in with a passkey"

_apps = itertools.count(1)


@pytest.fixture(scope="session")
def sso_server_bound(sso_server: Server) -> Server:
    """Bound as ``server`` in each test_sso_*.py: conftest's sso_server, started once per test
    process however many of these modules it runs (a fixture bound in a module is that
    module's own, so binding sso_server itself would start a server per module)."""
    return sso_server


@dataclass
class App:
    """An app registered at Threshold and known to the relying party under ``name``."""

    rp: RelyingParty
    server: Server
    name: str
    client_id: str
    client_secret: str | None
    metadata: dict[str, Any]

    def sync_clock(self) -> None:
        """Tell the relying party how far the tests moved Threshold's clock (Server.advance_clock),
        so that it checks exp and auth_time at the provider's time, as if NTP kept them agreed."""
        self.rp.call("/clock", {"skew": self.server.now() - time.time()})

    def login_url(self, **params: str) -> str:
        self.sync_clock()
        return f"{self.rp.url}/login/{self.name}" + (f"?{urlencode(params)}" if params else "")

    @property
    def logout_url(self) -> str:
        return f"{self.rp.url}/logout/{self.name}"

    @property
    def callback_url(self) -> str:
        return f"{self.rp.url}/cb/{self.name}"

    def state(self) -> dict[str, Any]:
        return dict(self.rp.call(f"/clients/{self.name}"))

    def flows(self) -> list[dict[str, Any]]:
        return list(self.state()["flows"])

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        self.sync_clock()
        return dict(self.rp.call(f"/clients/{self.name}/refresh", {"refresh_token": refresh_token}))

    def replay(self, index: int) -> dict[str, Any]:
        self.sync_clock()
        return dict(self.rp.call(f"/clients/{self.name}/replay", {"index": index}))

    def userinfo(self, access_token: str, sub: str) -> dict[str, Any]:
        self.sync_clock()
        body = {"access_token": access_token, "sub": sub}
        return dict(self.rp.call(f"/clients/{self.name}/userinfo", body))

    def introspect(self, token: str) -> dict[str, Any]:
        """The relying party asks Threshold about ``token`` (RFC 7662), as this app."""
        return dict(self.rp.call(f"/clients/{self.name}/introspect", {"token": token}))

    def use_secret(self, client_secret: str) -> None:
        """From now on the relying party authenticates with ``client_secret``."""
        self.rp.call(f"/clients/{self.name}/secret", {"client_secret": client_secret})

    def verify(self, id_token: str) -> dict[str, Any]:
        return dict(self.rp.call(f"/clients/{self.name}/verify", {"id_token": id_token}))

    def logouts(self, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The back-channel logout tokens received, waiting until there are ``count``."""
        self.sync_clock()
        deadline = time.monotonic() + timeout
        while True:
            received = list(self.state()["logouts"])
            if len(received) >= count or time.monotonic() > deadline:
                return received
            time.sleep(0.2)


RegisterApp = Callable[..., App]


@pytest.fixture
def register_app(server: Server, relying_party: RelyingParty) -> RegisterApp:
    """``register_app(*cli_args, public=, id_token_alg=, initiate_login=, auth="basic"|"post")``:
    `threshold apps add` an app whose redirect, post-logout, back-channel (and initiate-login)
    URIs are the relying party's, then tell the relying party its credentials (it runs
    discovery then)."""

    def register(
        *args: str,
        public: bool = False,
        id_token_alg: str | None = None,
        initiate_login: bool = False,
        auth: str = "basic",
    ) -> App:
        name = f"test-app-{next(_apps)}"
        rp = relying_party.url
        command = [
            "apps", "add", name,
            "--redirect-uri", f"{rp}/cb/{name}",
            "--post-logout-redirect-uri", f"{rp}/logged-out/{name}",
            "--backchannel-logout-uri", f"{rp}/backchannel/{name}",
            *(["--public"] if public else []),
            *(["--id-token-alg", id_token_alg] if id_token_alg else []),
            *(["--initiate-login-uri", f"{rp}/login/{name}"] if initiate_login else []),
            *args,
            "--json",
        ]  # fmt: skip
        relying_party.call("/clock", {"skew": server.now() - time.time()})
        credentials = json.loads(server.cli(*command))
        assert set(credentials) == {"client_id", "client_secret"}, credentials
        assert (credentials["client_secret"] is None) is public, credentials
        registered = relying_party.call(
            "/clients",
            {
                "name": name,
                "issuer": server.url,
                "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"],
                "id_token_alg": id_token_alg,
                "auth": auth,
            },
        )
        assert registered["ok"], registered
        return App(
            relying_party,
            server,
            name,
            credentials["client_id"],
            credentials["client_secret"],
            registered["metadata"],
        )

    return register


def hold_autofill(page: Page) -> None:
    """Keep Threshold's sign-in page from signing in by itself (see CREDENTIALS_SPY)."""
    page.add_init_script("window.__thresholdHoldAutofill = true;")


def result_on(page: Page) -> dict[str, Any]:
    """What the relying party shows on its callback page: the outcome it recorded."""
    return dict(json.loads(page.locator("#result").inner_text()))


def sign_in_to(page: Page, app: App, **params: str) -> dict[str, Any]:
    """Open the app's sign-in with ``params`` (prompt, max_age, acr_values, scope, ...); if
    Threshold asks for a passkey, select "Sign in with a passkey"; the relying party's outcome."""
    page.goto(app.login_url(**params))
    if not page.url.startswith(app.callback_url):
        page.get_by_role("button", name=SIGN_IN_BUTTON).click()
        page.wait_for_url(f"{app.callback_url}?*")
    return result_on(page)


def straight_to(page: Page, app: App, **params: str) -> dict[str, Any]:
    """Open the app's sign-in and expect Threshold to answer without showing a page."""
    page.goto(app.login_url(**params))
    assert page.url.startswith(app.callback_url), f"Threshold showed {page.url}"
    return result_on(page)
