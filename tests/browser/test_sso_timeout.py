"""Single sign-on when a Threshold session times out: `threshold cleanup` ends it and tells its
apps (Back-Channel Logout 1.0). Its own module, so its own server: the test moves the server's
clock two hours on, which the other single sign-on tests' server never sees.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser import sso_rp
from tests.browser.conftest import Authenticator, Invite, Server
from tests.browser.sso_rp import RegisterApp
from tests.browser.test_sso_logout import _assert_logout_token_for, _signed_in_to

pytestmark = pytest.mark.browser

register_app = sso_rp.register_app
server = sso_rp.sso_server_bound


def test_a_timed_out_session_tells_its_apps_when_cleanup_ends_it(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app()
    _person, signed_in = _signed_in_to(page, invite, app)

    server.advance_clock(2 * 3600)  # past THRESHOLD_SESSION_IDLE_TIMEOUT's 3600 s
    app.sync_clock()
    server.cli("cleanup")

    [logout] = app.logouts()
    _assert_logout_token_for(app, signed_in, logout)
