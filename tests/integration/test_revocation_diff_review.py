"""An outside review of the change 50fd751..HEAD: a session's end revokes what it gave apps.

Reviewed: the revocation of codes and tokens when a Threshold session ends (Sign out, the
timeout middleware, ``threshold cleanup``, a different person signing in in the same browser,
the key cycling of a new sign-in, the lean paths) and when an action withdraws access (lock from
the portal and the command line, deactivation, recovery, "Sign out other sessions", "End
sessions"); ``offline_access`` and the ``AppSignIn.offline`` column with its migration;
``_revoke_codes`` and the ``code_revoked`` audit; RP-initiated logout (whose tokens, the new
prompt, a forged or foreign hint); "Sign out of this app" and back-channel logout; the admin
portal's removal of a Threshold Verify device (roles, step-up, a mismatched URL, the
last-administrator guard, the confirmation page); and, on PostgreSQL, a sign-out, a refresh
and a code's exchange in flight and ``threshold cleanup`` at once (no deadlock seen).

Each defect is one test, marked xfail(strict=True) until it is fixed (a code given as its
session ends: fixed, the exchange finds the session ended). The last test pins that a session's
end that comes while a refresh of its token is in flight waits for it and revokes what it
wrote (sign-out and ``threshold cleanup``, which no other test runs against a refresh).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from oauth2_provider.models import get_refresh_token_model

import threshold.clock
from tests.integration.conftest import Browser, Person, enrolled_person
from tests.integration.portal_support import administrators_who_can_sign_in, post, staff
from tests.integration.test_concurrent_changes import while_one_holds
from tests.integration.test_lifecycle_review import set_up_device
from tests.integration.test_role_migration import migrate, restore_schema  # noqa: F401 - fixture
from tests.integration.test_sso import (
    App,
    add_app,
    authorize,
    exchange,
    full_flow,
    refresh,
    signed_in,
)
from threshold.accounts.actions import lock_user
from threshold.accounts.models import Role
from threshold.audit.actions import Action, Origin
from threshold.audit.models import AuditEvent
from threshold.core.policy import Policy
from threshold.devices.models import Device, KeyProtection
from threshold.policy.actions import do_update_policy
from threshold.sessions.actions import delete_timed_out_sessions
from threshold.sessions.models import Session
from threshold.sso import hotpath
from threshold.sso import validator as sso_validator
from threshold.sso.models import AppSignIn

pytestmark = pytest.mark.django_db


def consented_tokens(browser: Browser, app: App, scope: str) -> dict[str, Any]:
    """The tokens of a sign-in the person was asked about and allowed (``prompt=consent``)."""
    auth = authorize(browser, app, scope=scope, prompt="consent")
    assert auth.response.status_code == 200, auth.response.content[:300]
    assert b"Stay signed in to the app" in auth.response.content
    allowed = browser.client.post(
        auth.response.wsgi_request.get_full_path(),
        {"csrfmiddlewaretoken": browser.csrf_token(), "allow": "yes"},
    )
    code = parse_qs(urlsplit(allowed["Location"]).query)["code"][0]
    response = exchange(app, code, auth.verifier)
    assert response.status_code == 200, response.content
    return dict(response.json())


def end_session_now(user: Any, session_key: str | None) -> None:
    """What Sign out in another tab does to this browser's session, committed at this moment
    (``sessions.actions.sign_out``: the person's row, then the session's row)."""
    with transaction.atomic():
        lock_user(user)
        Session.objects.filter(session_key=session_key).delete()


# --- Defects -------------------------------------------------------------------------------------


def test_offline_access_is_given_only_when_the_person_is_asked(ada: Person) -> None:
    app = add_app()  # an app that does not require consent: its sign-ins ask nothing
    browser = signed_in(ada)

    auth = authorize(browser, app, scope="openid offline_access")

    if auth.response.status_code == 200:  # asked "Stay signed in to the app": right
        assert b"Stay signed in to the app" in auth.response.content
        return
    response = exchange(app, auth.params["code"], auth.verifier)
    assert response.status_code == 200, response.content
    assert browser.post_form("/sign-out").status_code == 303
    # Not asked, so not kept: the token ends with the session, as every other one does.
    assert refresh(app, response.json()["refresh_token"]).status_code == 400


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("restore_schema")
def test_an_upgrade_keeps_the_tokens_people_let_apps_keep(ada: Person) -> None:
    app = add_app(require_consent=True)
    browser = signed_in(ada)
    kept = consented_tokens(browser, app, "openid offline_access")
    # The database as the release before this change left it, then upgraded.
    migrate([("sso", "0002_app_sign_in_redirect_uri_named")])
    migrate([("sso", "0003_app_sign_in_revocation")])
    # And what came after it, which today's code reads.
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    assert browser.post_form("/sign-out").status_code == 303

    assert AppSignIn.objects.get().offline
    assert refresh(app, kept["refresh_token"]).status_code == 200


def test_an_apps_logout_keeps_the_token_the_person_let_it_keep(ada: Person) -> None:
    app = add_app(require_consent=True)
    browser = signed_in(ada)
    kept = consented_tokens(browser, app, "openid offline_access")

    response = browser.get("/end-session?" + urlencode({"id_token_hint": kept["id_token"]}))

    assert response.status_code == 200
    assert not browser.is_signed_in()  # signed out, not asked
    assert refresh(app, kept["refresh_token"]).status_code == 200


def test_a_code_given_as_its_session_ends_is_revoked_with_it(
    ada: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = add_app()
    browser = signed_in(ada)
    full_flow(browser, app)  # the session has its sid: /authorize writes nothing to it
    create = sso_validator.Validator._create_authorization_code

    def signed_out_meanwhile(self: Any, request: Any, code: Any, expires: Any = None) -> Any:
        # The person's Sign out in another tab commits after /authorize read the session.
        end_session_now(ada.user, browser.session_key)
        return create(self, request, code, expires)

    monkeypatch.setattr(sso_validator.Validator, "_create_authorization_code", signed_out_meanwhile)
    auth = authorize(browser, app)
    monkeypatch.undo()

    assert not Session.objects.filter(session_key=browser.session_key).exists()
    code = parse_qs(urlsplit(auth.response.get("Location", "")).query).get("code")
    if code is None:  # refused: the session had ended
        return
    response = exchange(app, code[0], auth.verifier)
    assert response.status_code == 400, response.content


def test_a_code_revoked_during_its_exchange_is_not_audited_as_a_replay(
    ada: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = add_app()
    browser = signed_in(ada)
    auth = authorize(browser, app)
    save = sso_validator.Validator.save_bearer_token

    def signed_out_meanwhile(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The exchange has read the code; the person's sign-out commits before it writes.
        end_session_now(ada.user, browser.session_key)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(sso_validator.Validator, "save_bearer_token", signed_out_meanwhile)
    response = exchange(app, auth.params["code"], auth.verifier)

    assert response.status_code == 400
    assert AppSignIn.objects.get().code_revoked
    refused = AuditEvent.objects.get(action=Action.SSO_TOKEN_REFUSED)
    assert refused.reason == "code_revoked"


def test_removing_a_device_counts_what_is_left_by_that_device(db: None) -> None:
    ada, ada_browser = staff("ada@example.com", Role.ADMINISTRATOR)
    grace, _ = staff("grace@example.com", Role.ADMINISTRATOR)
    tpm = set_up_device(grace.user, "Pixel 9 Pro")
    set_up_device(grace.user, "Old phone")  # a software key
    Device.objects.filter(public_id=tpm.device_id).update(key_protection=KeyProtection.TPM)
    # Hardware-held device keys only, and the passkey model both administrators use refused:
    # Grace signs in with her Pixel only; Ada is still signed in, with no way back in.
    refused = (str(ada.passkey.aaguid),)
    do_update_policy(
        Policy(require_hardware_device_key=True, aaguid_deny_list=refused), Origin.cli()
    )
    assert administrators_who_can_sign_in() == ["grace@example.com"]
    path = f"/admin/people/{grace.user.pk}/devices/{tpm.device_id}/remove"

    asked = ada_browser.get(path).content.decode()
    answer = post(ada_browser, path)

    assert "They will have no way left to sign in" in asked
    assert answer.status_code == 409
    assert administrators_who_can_sign_in() == ["grace@example.com"]


# --- What works ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["sign_out", "cleanup"])
def test_a_session_end_waits_for_a_refresh_in_flight_and_revokes_what_it_wrote(
    monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    app = add_app()
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    key = browser.session_key
    later = time.time() + 40 * 24 * 3600  # past every session timeout

    def end() -> Any:
        if ending == "sign_out":
            return browser.post_form("/sign-out").status_code
        monkeypatch.setattr(threshold.clock, "now", lambda: later)
        return delete_timed_out_sessions()

    refreshed, ended, *_ = while_one_holds(
        monkeypatch,
        hotpath,
        "lock_live_refresh_token",
        lambda: refresh(app, tokens["refresh_token"]),
        end,
    )

    assert not isinstance(ended, BaseException), ended
    assert not isinstance(refreshed, BaseException), refreshed
    assert refreshed.status_code == 200, refreshed.content
    assert not Session.objects.filter(session_key=key).exists()
    assert not get_refresh_token_model().objects.filter(user=ada.user, revoked__isnull=True)
    assert refresh(app, refreshed.json()["refresh_token"]).status_code == 400
