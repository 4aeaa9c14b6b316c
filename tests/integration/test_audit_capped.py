"""Refusals that name no one are audited up to a rate per network (threshold/audit/capped.py):
a flood of junk at the single sign-on endpoints cannot fill the audit log, the flood's clients
get the same answers, and refusals with a person behind them are always recorded."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.integration.conftest import Browser
from tests.integration.test_sso import add_app, authorize, signed_in
from threshold.audit import capped
from threshold.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

JUNK = {"grant_type": "authorization_code", "code": "x", "client_id": "no-such-app"}


def junk_token(ip: str = "198.51.100.7") -> tuple[int, bytes]:
    response = Client(REMOTE_ADDR=ip).post("/token", JUNK)
    return response.status_code, response.content


def rows(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_flood_of_junk_is_audited_up_to_its_networks_rate(clock):
    answers = {junk_token() for _ in range(capped.BURST + 10)}
    # The flood's clients cannot tell: one answer throughout.
    assert len(answers) == 1
    assert answers.pop()[0] == 401
    assert len(rows("sso.token_refused")) == capped.BURST
    (capped_row,) = rows("audit.refusals_capped")
    assert capped_row.detail == {"refused": "sso.token_refused", "network": "198.51.100.7"}
    assert capped_row.ip == "198.51.100.7"
    # One more row per 1 / RATE seconds, saying how many were not recorded meanwhile.
    clock.advance(1 / capped.RATE)
    junk_token()
    last = rows("sso.token_refused")[-1]
    assert last.detail["suppressed"] == 10
    assert last.reason == "invalid_client"
    junk_token()
    assert len(rows("sso.token_refused")) == capped.BURST + 1
    assert len(rows("audit.refusals_capped")) == 2  # a new run of refusals not recorded


def test_each_network_has_its_own_rate(clock):
    for _ in range(capped.BURST + 1):
        junk_token("198.51.100.7")
    junk_token("192.0.2.55")
    junk_token("2001:db8:1:2::5")
    junk_token("2001:db8:1:2::6")  # the same IPv6 /64
    assert [r.ip for r in rows("sso.token_refused")][-3:] == [
        "192.0.2.55",
        "2001:db8:1:2::5",
        "2001:db8:1:2::6",
    ]


def test_introspection_and_body_refusals_share_the_rate(clock):
    client = Client(REMOTE_ADDR="198.51.100.9")
    for _ in range(capped.BURST):
        client.post("/introspect", {"token": "x", "client_id": "no-such-app"})
    answer = client.post("/revoke", b"%" * 70_000, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert len(rows("sso.introspection_refused")) == capped.BURST
    assert rows("sso.token_refused") == []
    assert rows("audit.refusals_capped")[0].detail["refused"] == "sso.token_refused"


def test_an_anonymous_authorize_flood_is_capped_but_a_persons_refusal_is_not(ada, clock):
    app = add_app()
    anonymous = Browser(REMOTE_ADDR="198.51.100.7")
    for _ in range(capped.BURST + 5):
        page = anonymous.get("/authorize?client_id=no-such-app&response_type=code")
        assert page.status_code == 400
    assert len(rows("sso.refused")) == capped.BURST
    # Ada, signed in, from the same network: her refusal names her, and is recorded.
    browser = signed_in(ada)
    browser.client.defaults["REMOTE_ADDR"] = "198.51.100.7"
    auth = authorize(browser, app, scope="openid nonsense")
    assert auth.response.status_code == 302
    refused = rows("sso.refused")[-1]
    assert (refused.reason, refused.subject) == ("invalid_scope", ada.user)


def test_an_anonymous_logout_flood_is_capped(clock):
    anonymous = Browser(REMOTE_ADDR="198.51.100.7")
    for _ in range(capped.BURST + 3):
        page = anonymous.get("/end-session?id_token_hint=junk")
        assert page.status_code == 400
    refused = rows("sso.refused")
    assert len(refused) == capped.BURST
    assert refused[0].detail == {"logout": True}


def test_a_public_apps_junk_refresh_tokens_are_capped(clock):
    """A public app's client_id, which any authorization link shows, is all it takes to send
    refresh tokens that match nothing: refused with no person, so capped."""
    app = add_app(public=True)
    client = Client(REMOTE_ADDR="198.51.100.7")
    for number in range(capped.BURST + 5):
        answer = client.post(
            "/token",
            {
                "grant_type": "refresh_token",
                "client_id": app.client_id,
                "refresh_token": f"junk{number}",
            },
        )
        assert answer.status_code == 400
    refused = rows("sso.token_refused")
    assert len(refused) == capped.BURST
    assert {r.reason for r in refused} == {"refresh_token_unknown"}
