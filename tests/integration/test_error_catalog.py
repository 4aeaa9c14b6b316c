"""The error catalog in the pages' answers: next steps in the JSON API, and the sign-in page's
password links, only where the policy allows a password."""

from __future__ import annotations

import dataclasses
import html
import re

import pytest

from tests.integration.conftest import Browser
from threshold.audit.actions import Origin
from threshold.core.catalog import CATALOG
from threshold.policy.actions import do_update_policy, get_policy

pytestmark = pytest.mark.django_db


def text_of(response) -> str:
    return html.unescape(response.content.decode())


def test_json_failures_carry_the_entrys_next_steps():
    response = Browser().post_json("/enroll/garbled-token/options")
    error = response.json()["error"]
    assert error["code"] == "invite_unusable"
    assert error["nextSteps"] == list(CATALOG["invite_unusable"].next_steps)


# --- The password fallback on the sign-in page -------------------------------------------------


def set_fallback(allowed: bool) -> None:
    do_update_policy(
        dataclasses.replace(get_policy(), allow_password_fallback=allowed), Origin.cli()
    )


def test_the_sign_in_page_offers_a_password_when_the_policy_allows_it():
    set_fallback(True)
    page = text_of(Browser().get("/sign-in?next=/settings"))
    assert 'data-password-url="/sign-in/password?next=%2Fsettings"' in page
    assert re.search(
        r'<a id="password-link" href="/sign-in/password\?next=%2Fsettings">'
        r"Sign in with a password instead</a>",
        page,
    )


def test_the_sign_in_page_offers_no_password_when_the_policy_does_not():
    set_fallback(False)
    page = text_of(Browser().get("/sign-in"))
    # webauthn.js shows the error notice's password step only with a URL to go to.
    assert 'data-password-url=""' in page
    assert 'id="password-link"' not in page
