"""Outside review of 1d288ba..HEAD in threshold/: the refresh that ends a timed-out session
(sso/sessions.py ``live_session``, sessions/actions.py ``end_if_timed_out``), the
/authorize-challenge follow-up without client_id, the policy in force at a ceremony's end and
at a push's finish, /authorize's passkeys filtered by the policy, the passkey limit counting
allowed passkeys, the audit-trail changes (operator, ``record_all``, ``FAILURES``, the CSV
export, /revoke audited), /token's and /revoke's repeated parameters and double client
authentication, broken percent-encoding, the JSON and JOSE content types, NaN and Infinity,
x5c's shape, the conformance extensions' depth, IDNA in invites and the 2,000-character URIs.

Judged against OpenID Connect Core (§3.1.2.1, §11), Back-Channel Logout, RFC 6749 §2.3/§3.2,
RFC 7009, RFC 8259 and the project's own docs. Real requests through Django's test client;
only the clock is pinned, and a barrier holds two requests at one point to make a race
happen every time (as test_sso.py's ``writing_together`` does). Each strict xfail is a defect.
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any

import pytest

from tests.integration.conftest import (
    SESSION_COOKIE,
    Browser,
    FrozenClock,
    Person,
    assert_ok,
    enrolled_person,
    sign_in,
)
from tests.integration.test_concurrent_changes import all_at_once
from tests.integration.test_device_app import answer, pending, set_up_device
from tests.integration.test_security_methods import add_passkey
from tests.integration.test_sso import add_app, authorize, exchange, refresh, signed_in
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.policy import Policy
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy
from threshold.sessions import flow
from threshold.sso import sessions as sso_sessions
from threshold.sso import views as sso_views

pytestmark = pytest.mark.django_db


# --- The refresh that ends a timed-out session (live_session) ----------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_apps_signed_in_to_at_once_both_keep_refreshing(
    ada: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser restoring two app tabs, or an app's silent renew beside its main window: two
    /authorize requests of one fresh session at once. Both are answered, the person stays
    signed in, and both apps' refresh tokens must live as long as that session (OpenID Connect
    Core §11); neither app was signed out."""
    wiki, mail = add_app(name="Wiki"), add_app(name="Mail")
    tab = signed_in(ada)
    other_tab = Browser()
    other_tab.client.cookies[SESSION_COOKIE] = tab.session_key or ""
    both = threading.Barrier(2, timeout=10)
    real = sso_sessions.facts_of

    def facts_read_together(request: Any) -> Any:
        # Both requests have read the session's facts before either answers: only timing.
        facts = real(request)
        both.wait()
        return facts

    monkeypatch.setattr(sso_views, "facts_of", facts_read_together)
    asked = all_at_once([lambda: authorize(tab, wiki), lambda: authorize(other_tab, mail)])
    monkeypatch.setattr(sso_views, "facts_of", real)

    refreshed = []
    for app, auth in zip((wiki, mail), asked, strict=True):
        assert auth.response.status_code == 302, auth
        tokens = exchange(app, auth.params["code"], auth.verifier)
        assert tokens.status_code == 200, tokens.content
        refreshed.append(refresh(app, tokens.json()["refresh_token"]))
    assert tab.is_signed_in()
    refused = AuditEvent.objects.filter(action="sso.token_refused")
    assert not refused.exists(), list(refused.values_list("reason", flat=True))
    assert [r.status_code for r in refreshed] == [200, 200]


# --- The push sign-in's refusal, now audited ------------------------------------------------------


def test_a_refused_push_is_audited_once_however_often_its_finish_is_replayed(
    ada: Person, clock: FrozenClock
) -> None:
    """A stranger sends Ada a push; she says "not me" (push.denied is her row). The stranger's
    browser keeps the push's cookie, which the finish's answer only asks it to forget, and posts
    "I approved it" again and again. Rows that name a person, written at an anonymous caller's
    will, are what ``record_capped`` exists for; the step-up push records its failure once."""
    device = set_up_device(ada)
    stranger = Browser(REMOTE_ADDR="198.51.100.9")
    assert_ok(stranger.post_json("/sign-in/push/start", {"username": "ada@example.com"}))
    [push] = pending(device)
    assert_ok(answer(device, push["id"], decision="deny"))
    kept = {name: morsel.value for name, morsel in stranger.client.cookies.items()}
    for _ in range(25):
        for name, value in kept.items():
            stranger.client.cookies[name] = value
        assert stranger.post_form("/sign-in/push/finish").status_code == 400
    rows = AuditEvent.objects.filter(action="sign_in.failed", subject=ada.user)
    assert rows.count() <= 1, list(rows.values_list("reason", flat=True))


# --- /authorize offers only the passkeys the policy allows ---------------------------------------


def _credential_id(passkey: Passkey) -> str:
    return base64.urlsafe_b64encode(bytes(passkey.credential_id)).rstrip(b"=").decode()


def test_signing_in_again_for_an_app_offers_only_passkeys_the_policy_allows(
    clock: FrozenClock,
) -> None:
    """Bea has a synced passkey and a security key; synced passkeys are then blocked. An app
    asks for prompt=login: /authorize checks that she has an allowed passkey (the change), but
    the ceremony it sends her to lists both, and her phone's passkey is refused at the end."""
    bea = enrolled_person("bea@example.com", "Bea", backup_eligible=True, backup_state=True)
    browser = Browser()
    assert_ok(sign_in(browser, bea.authenticator))
    assert_ok(add_passkey(browser, SoftAuthenticator()))
    do_update_policy(Policy(block_synced_passkeys=True), Origin.cli())
    auth = authorize(browser, add_app(), prompt="login")
    assert auth.response.status_code == 302
    html = browser.get(auth.location).content.decode()
    found = re.search(r'data-options-url="([^"]+)"', html)
    assert found is not None
    step_up: dict[str, Any] = {flow.META_KEY: flow.issue_flow_token(flow.Flow.STEP_UP)}
    options = browser.post_json(found.group(1).replace("&amp;", "&"), {}, **step_up)
    assert options.status_code == 200, options.content
    offered = {c["id"] for c in options.json()["publicKey"]["allowCredentials"]}
    synced = Passkey.objects.get(user=bea.user, backup_eligible=True)
    allowed = Passkey.objects.get(user=bea.user, backup_eligible=False)
    assert _credential_id(allowed) in offered
    assert _credential_id(synced) not in offered
