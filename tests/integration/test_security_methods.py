"""Settings → Security Methods: see, name, add and remove passkeys, with step-up."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.core import mail

from tests.integration.conftest import (
    ALREADY_REGISTERED,
    CEREMONY_COOKIE_PREFIX,
    LIMIT_REACHED,
    ORIGIN,
    Browser,
    Person,
    assert_failed,
    assert_ok,
    audit_trail,
    enrolled_person,
    last_event,
    sign_in,
    without_csrf,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core import errors
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.core.policy import Policy
from threshold.passkeys.actions import do_begin_step_up, do_finish_sign_in
from threshold.passkeys.models import Passkey
from threshold.passkeys.pending import Ceremonies
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db

MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)
WINDOWS_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0"
)
VERIFY_IT_IS_YOU = "Verify it\u2019s you"
NOT_FOUND = "Security Method Not Found"
NAME_NOT_SAVED = "Name Not Saved"
ONLY_METHOD = "You Can\u2019t Remove Your Only Sign-in Method"


def signed_in_browser(person: Person, **defaults: Any) -> Browser:
    browser = Browser(**defaults)
    assert_ok(sign_in(browser, person.authenticator))
    return browser


@pytest.fixture
def ada_browser(ada, clock) -> Browser:
    """Ada signed in (with user verification) on a Mac, at ``clock.now``."""
    return signed_in_browser(ada, HTTP_USER_AGENT=MAC_CHROME)


def add_passkey(
    browser: Browser, authenticator: SoftAuthenticator, device: str = "security-key", **create: Any
):
    options = browser.post_json("/settings/security-methods/add/options", {"device": device})
    assert options.status_code == 200, options.content
    credential = authenticator.create(options.json()["publicKey"], ORIGIN, **create)
    return browser.post_json("/settings/security-methods/add/result", credential)


def step_up(browser: Browser, authenticator: SoftAuthenticator, next_path: str = "/settings"):
    options = browser.post_json("/settings/verify/options")
    assert options.status_code == 200, options.content
    assertion = authenticator.get(options.json()["publicKey"], ORIGIN)
    return browser.post_json(f"/settings/verify/result?next={next_path}", assertion)


def signals_of(html: str) -> dict[str, Any]:
    found = re.search(
        r'<script id="threshold-signals" type="application/json">(.*?)</script>', html
    )
    assert found, "no Signal API data on the page"
    return json.loads(found.group(1))


def key_of_ada() -> SoftAuthenticator:
    return SoftAuthenticator()


# --- The page ----------------------------------------------------------------------------------


def test_settings_needs_a_signed_in_person(browser):
    response = browser.get("/settings")
    assert response.status_code == 302
    assert response["Location"].startswith("/sign-in")


def test_the_name_in_the_header_leads_to_settings(ada_browser):
    html = ada_browser.get("/").content.decode()
    header = html[html.index("<header") : html.index("</header>")]
    assert "Ada Lovelace" in header
    assert 'href="/settings"' in header


def test_settings_lists_passkeys_in_their_group(ada, ada_browser):
    html = ada_browser.get("/settings").content.decode()
    assert "Security Methods" in html
    # The device app's group (issue 12), empty until a device is set up; no placeholder.
    assert 'id="device-app-heading">Threshold Verify<' in html
    assert "Threshold Verify is not set up on any device" in html
    assert 'id="device-app-empty"' not in html
    assert "Security Key or Biometric Authenticator" in html
    assert "Set up another" in html
    assert f'id="passkey-{ada.passkey.pk}"' in html
    assert "Only on this device" in html
    assert "Last used" in html


def test_a_new_passkey_is_named_after_its_authenticator_and_browser(ada, ada_browser):
    response = add_passkey(
        ada_browser, SoftAuthenticator(), transports=("usb",), attachment="cross-platform"
    )
    body = assert_ok(response)
    passkey = Passkey.objects.filter(user=ada.user).latest("id")
    assert body["redirect"] == f"/settings?added={passkey.pk}"
    assert passkey.created_user_agent == MAC_CHROME
    assert passkey.name.endswith("(Chrome on macOS)")
    assert passkey.kind == "Security key"
    assert passkey.storage == "Only on this key"

    html = ada_browser.get(body["redirect"]).content.decode()
    # The nickname prompt, pre-filled with the default; the newest is marked.
    assert 'id="new-nickname"' in html
    assert f'value="{passkey.name}"' in html
    newest = html[html.index(f'id="passkey-{passkey.pk}"') :]
    assert "Most recently added" in newest.split("</li>")[0]


def test_last_use_records_the_browser(ada, clock):
    signed_in_browser(ada, HTTP_USER_AGENT=WINDOWS_EDGE)
    assert ada.passkey.last_used_from == "Edge on Windows"


# --- Step-up ---------------------------------------------------------------------------------


def test_set_up_another_right_after_signing_in_needs_no_second_verification(ada_browser):
    page = ada_browser.get("/settings/security-methods/add")
    assert page.status_code == 200
    assert "This device" in page.content.decode()


def test_a_stale_verification_sends_the_person_to_verify_first(ada, ada_browser, clock):
    clock.advance(301)
    page = ada_browser.get("/settings/security-methods/add")
    assert page.status_code == 303
    assert page["Location"] == "/settings/verify?next=%2Fsettings%2Fsecurity-methods%2Fadd"
    verify = ada_browser.get(page["Location"])
    assert VERIFY_IT_IS_YOU in verify.content.decode()

    refused = ada_browser.post_json(
        "/settings/security-methods/add/options", {"device": "this-device"}
    )
    assert_failed(refused, 403, VERIFY_IT_IS_YOU)

    body = assert_ok(step_up(ada_browser, ada.authenticator, "/settings/security-methods/add"))
    assert body["redirect"] == "/settings/security-methods/add"
    assert last_event("step_up.succeeded").subject == ada.user
    assert ada_browser.get("/settings/security-methods/add").status_code == 200


def test_the_step_up_window_is_a_policy_setting(ada_browser, clock):
    do_update_policy(Policy(step_up_max_age_seconds=900), Origin.cli())
    clock.advance(600)
    assert ada_browser.get("/settings/security-methods/add").status_code == 200


def test_a_sign_in_without_user_verification_is_no_step_up(db, clock):
    do_update_policy(Policy(user_verification="preferred"), Origin.cli())
    grace = enrolled_person("grace@example.com", "Grace Hopper", user_verified=False)
    browser = signed_in_browser(grace)
    assert browser.get("/settings/security-methods/add").status_code == 303


def test_step_up_with_another_persons_passkey_fails(ada, ada_browser, clock):
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    clock.advance(301)
    options = ada_browser.post_json("/settings/verify/options").json()["publicKey"]
    # Grace's authenticator answers with her own credential, not one Ada's options allow.
    options["allowCredentials"] = []
    response = ada_browser.post_json(
        "/settings/verify/result", grace.authenticator.get(options, ORIGIN)
    )
    assert_failed(response, 400, "Verification failed")
    assert last_event("step_up.failed").reason == "credential_not_allowed"
    assert ada_browser.get("/settings/security-methods/add").status_code == 303


def test_a_step_up_challenge_cannot_finish_a_sign_in(ada, ada_browser):
    options = ada_browser.post_json("/settings/verify/options").json()["publicKey"]
    assertion = ada.authenticator.get(options, ORIGIN)
    response = ada_browser.post_json("/sign-in/result", assertion)
    assert_failed(response, 400, "Session Expired")


def test_verify_returns_only_to_settings_pages(ada, ada_browser):
    body = assert_ok(step_up(ada_browser, ada.authenticator, "https://evil.example/settings/x"))
    assert body["redirect"] == "/settings"
    body = assert_ok(step_up(ada_browser, ada.authenticator, "//evil.example/settings/"))
    assert body["redirect"] == "/settings"


# --- Set up another ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "attachment", "hint"),
    [
        ("this-device", "platform", "client-device"),
        ("phone", "cross-platform", "hybrid"),
        ("security-key", "cross-platform", "security-key"),
    ],
)
def test_each_choice_asks_the_browser_for_that_kind_of_authenticator(
    ada, ada_browser, device, attachment, hint
):
    response = ada_browser.post_json("/settings/security-methods/add/options", {"device": device})
    options = assert_ok(response)["publicKey"]
    assert options["authenticatorSelection"]["authenticatorAttachment"] == attachment
    assert options["hints"] == [hint]
    excluded = [c["id"] for c in options["excludeCredentials"]]
    assert excluded == [b64url_encode(bytes(ada.passkey.credential_id))]


def test_adding_a_passkey_is_audited_and_emailed(
    ada, ada_browser, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(
            add_passkey(
                ada_browser, SoftAuthenticator(), transports=("usb",), attachment="cross-platform"
            )
        )
    event = last_event("passkey.registered")
    assert event.detail["purpose"] == "add"
    assert event.actor == ada.user
    assert len(mail.outbox) == 1
    notice = mail.outbox[0]
    assert notice.to == ["ada@example.com"]
    assert "added" in notice.subject
    assert "Chrome on macOS" in notice.body
    assert "203.0.113.7" in notice.body
    assert "If it wasn't you" in notice.body
    assert "You can also remove it yourself: under\nSettings, Security Methods, select Remove" in (
        notice.body
    )


def test_the_same_authenticator_cannot_be_added_twice(ada, ada_browser):
    credential_id = bytes(ada.passkey.credential_id)
    response = add_passkey(ada_browser, SoftAuthenticator(), credential_id=credential_id)
    assert_failed(response, 400, ALREADY_REGISTERED)
    assert Passkey.objects.filter(user=ada.user).count() == 1


def test_the_passkey_limit_is_enforced(ada, ada_browser):
    do_update_policy(Policy(passkey_limit=2), Origin.cli())
    assert_ok(add_passkey(ada_browser, SoftAuthenticator()))
    page = ada_browser.get("/settings/security-methods/add").content.decode()
    assert LIMIT_REACHED in page
    refused = ada_browser.post_json("/settings/security-methods/add/options", {"device": "phone"})
    assert_failed(refused, 400, LIMIT_REACHED)
    assert Passkey.objects.filter(user=ada.user).count() == 2


def test_the_limit_holds_for_ceremonies_begun_below_it(ada, ada_browser):
    do_update_policy(Policy(passkey_limit=2), Origin.cli())
    options = ada_browser.post_json("/settings/security-methods/add/options", {"device": "phone"})
    # Another tab adds a passkey first; the ceremony begun below the limit then finishes.
    other_tab = signed_in_browser(ada)
    assert_ok(add_passkey(other_tab, SoftAuthenticator()))
    credential = SoftAuthenticator().create(options.json()["publicKey"], ORIGIN)
    response = ada_browser.post_json("/settings/security-methods/add/result", credential)
    assert_failed(response, 400, LIMIT_REACHED)
    assert Passkey.objects.filter(user=ada.user).count() == 2


@pytest.mark.parametrize(
    "body",
    [{"device": "toaster"}, {"device": 7}, [], "x" * 10],
)
def test_add_options_refuse_bad_input(ada_browser, body):
    response = ada_browser.post_json("/settings/security-methods/add/options", body)
    assert_failed(response, 400, "Session Expired")


def test_add_result_without_a_ceremony_stores_nothing(ada, ada_browser):
    options = {
        "challenge": b64url_encode(b"x" * 32),
        "rp": {"id": "localhost"},
        "user": {"id": b64url_encode(bytes(ada.user.user_handle))},
        "pubKeyCredParams": [{"alg": -7}],
    }
    credential = SoftAuthenticator().create(options, ORIGIN)
    response = ada_browser.post_json("/settings/security-methods/add/result", credential)
    assert_failed(response, 400, "Session Expired")
    assert Passkey.objects.filter(user=ada.user).count() == 1


# --- Rename --------------------------------------------------------------------------------------


def rename(browser: Browser, passkey_id: int, nickname: Any):
    return browser.client.post(
        f"/settings/security-methods/{passkey_id}/rename",
        {"csrfmiddlewaretoken": browser.csrf_token(), "nickname": nickname},
    )


def test_renaming_a_passkey(ada, ada_browser):
    response = rename(ada_browser, ada.passkey.pk, "  Work   laptop ")
    assert response.status_code == 303
    assert response["Location"] == f"/settings?done=renamed#passkey-{ada.passkey.pk}"
    assert ada.passkey.nickname == "Work laptop"
    event = last_event("passkey.renamed")
    assert event.detail["new"] == "Work laptop"
    assert event.actor == ada.user
    assert "Work laptop" in ada_browser.get("/settings").content.decode()


@pytest.mark.parametrize(
    "nickname",
    ["", "   ", "x" * 61, "<script>alert(1)</script>", "Key\u202egnp.exe", "a\x00b"],
)
def test_bad_nicknames_are_refused_and_change_nothing(ada, ada_browser, nickname):
    response = rename(ada_browser, ada.passkey.pk, nickname)
    assert response.status_code == 400
    html = response.content.decode()
    assert NAME_NOT_SAVED in html
    assert "<script>alert" not in html
    assert ada.passkey.nickname == ""
    assert not AuditEvent.objects.filter(action="passkey.renamed").exists()


def input_tag(html: str, element_id: str) -> str:
    match = re.search(rf'<input id="{element_id}"[^>]*>', html)
    assert match, f"no input #{element_id}"
    return match.group(0)


def test_every_nickname_field_states_its_limit(ada, ada_browser):
    html = ada_browser.get("/settings").content.decode()
    pk = ada.passkey.pk
    assert f'<p class="hint" id="nickname-{pk}-hint">Up to 60 characters.</p>' in html
    field = input_tag(html, f"nickname-{pk}")
    assert f'aria-describedby="nickname-{pk}-hint"' in field
    assert 'maxlength="60"' in field
    assert "aria-invalid" not in field


def test_a_refused_nickname_is_kept_and_its_error_tied_to_the_field(ada, ada_browser):
    pk = ada.passkey.pk
    response = rename(ada_browser, pk, "Work <laptop>")
    assert response.status_code == 400
    html = response.content.decode()
    # The form is open, with what was typed, marked invalid and described by the error.
    assert re.search(
        rf'<li id="passkey-{pk}" class="method">.*?<details class="rename" open>', html, re.S
    )
    field = input_tag(html, f"nickname-{pk}")
    assert 'value="Work &lt;laptop&gt;"' in field
    assert 'aria-invalid="true"' in field
    assert f'aria-describedby="nickname-{pk}-error nickname-{pk}-hint"' in field
    error = re.search(rf'<p class="notice error" id="nickname-{pk}-error">(.*?)</p>', html, re.S)
    assert error, html
    assert NAME_NOT_SAVED in error.group(1)
    assert "Enter a name that is not empty and not too long" in error.group(1)
    assert "Up to 60 characters." in html


def test_a_refused_nickname_is_shown_again_without_control_characters(ada, ada_browser):
    pk = ada.passkey.pk
    html = rename(ada_browser, pk, "Key\u202egnp.exe\x00").content.decode()
    assert 'value="Keygnp.exe"' in input_tag(html, f"nickname-{pk}")


def test_another_persons_passkey_reads_like_a_missing_one(ada, ada_browser):
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    theirs = rename(ada_browser, grace.passkey.pk, "Mine now")
    missing = rename(ada_browser, grace.passkey.pk + 1000, "Mine now")
    huge = rename(ada_browser, 10**30, "Mine now")
    for response in (theirs, missing, huge):
        assert response.status_code == 404
        assert NOT_FOUND in response.content.decode()
    assert without_csrf(theirs.content) == without_csrf(missing.content)
    assert grace.passkey.nickname == ""

    for path in (grace.passkey.pk, grace.passkey.pk + 1000):
        assert ada_browser.get(f"/settings/security-methods/{path}/remove").status_code == 404
    assert Passkey.objects.filter(user=grace.user).count() == 1


def test_rename_needs_post_and_the_csrf_token(ada, ada_browser):
    path = f"/settings/security-methods/{ada.passkey.pk}/rename"
    assert ada_browser.get(path).status_code == 405
    assert ada_browser.client.post(path, {"nickname": "x"}).status_code == 403
    assert ada.passkey.nickname == ""


# --- Remove --------------------------------------------------------------------------------------


def test_the_last_method_cannot_be_removed(ada, ada_browser):
    path = f"/settings/security-methods/{ada.passkey.pk}/remove"
    page = ada_browser.get(path).content.decode()
    assert ONLY_METHOD in page
    assert "Set up another" in page
    response = ada_browser.post_form(path)
    assert response.status_code == 409
    assert ONLY_METHOD in response.content.decode()
    assert Passkey.objects.filter(user=ada.user).count() == 1
    event = last_event("passkey.removal_refused")
    assert event.reason == "last_method"


def test_removing_a_passkey(ada, ada_browser, django_capture_on_commit_callbacks):
    assert_ok(add_passkey(ada_browser, SoftAuthenticator()))
    first = ada.user.passkeys.order_by("id").first()
    path = f"/settings/security-methods/{first.pk}/remove"
    assert "Remove &ldquo;" in ada_browser.get(path).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = ada_browser.post_form(path)
    assert response.status_code == 303
    assert response["Location"] == "/settings?done=removed"
    assert not Passkey.objects.filter(pk=first.pk).exists()
    event = last_event("passkey.removed")
    assert event.detail["passkey_id"] == first.pk
    assert event.actor == ada.user
    assert [m.subject for m in mail.outbox][-1].startswith("A passkey was removed")

    # The page tells the browser which passkeys remain (Signal API).
    html = ada_browser.get("/settings?done=removed").content.decode()
    accepted = signals_of(html)["allAcceptedCredentialIds"]
    assert b64url_encode(bytes(first.credential_id)) not in accepted
    assert len(accepted) == 1

    # A replayed removal finds nothing.
    replay = ada_browser.post_form(path)
    assert replay.status_code == 404
    assert NOT_FOUND in replay.content.decode()
    assert [a for a, _ in audit_trail()].count("passkey.removed") == 1


def test_removal_needs_a_recent_verification(ada, ada_browser, clock):
    assert_ok(add_passkey(ada_browser, SoftAuthenticator()))
    first = ada.user.passkeys.order_by("id").first()
    clock.advance(301)
    path = f"/settings/security-methods/{first.pk}/remove"
    response = ada_browser.post_form(path)
    assert response.status_code == 303
    assert response["Location"].startswith("/settings/verify?next=")
    assert Passkey.objects.filter(pk=first.pk).exists()


def test_a_removed_passkey_is_signalled_as_unknown_at_sign_in(ada, ada_browser):
    second = SoftAuthenticator()
    assert_ok(add_passkey(ada_browser, second))
    assert (
        ada_browser.post_form(
            f"/settings/security-methods/{ada.user.passkeys.order_by('id').first().pk}/remove"
        ).status_code
        == 303
    )
    response = sign_in(Browser(), ada.authenticator)
    body = assert_failed(response, 400, "Verification failed")
    assert body["unknownCredential"] is True

    # Other failures do not say so.
    other = sign_in(Browser(), second, origin="https://evil.example")
    assert "unknownCredential" not in assert_failed(other, 400, "Verification failed")


# --- Name, readiness, signals --------------------------------------------------------------------


def test_changing_ones_name_signals_the_password_manager(ada, ada_browser):
    response = ada_browser.client.post(
        "/settings/profile",
        {"csrfmiddlewaretoken": ada_browser.csrf_token(), "full_name": "Augusta Ada King"},
    )
    assert response.status_code == 303
    ada.user.refresh_from_db()
    assert ada.user.full_name == "Augusta Ada King"
    assert last_event("user.display_name_changed").detail["new"] == "Augusta Ada King"
    signals = signals_of(ada_browser.get(response["Location"]).content.decode())
    assert signals["userDetailsChanged"] is True
    assert signals["displayName"] == "Augusta Ada King"
    assert signals["userId"] == b64url_encode(bytes(ada.user.user_handle))
    assert signals_of(ada_browser.get("/settings").content.decode())["userDetailsChanged"] is False


def test_a_bad_display_name_is_refused(ada, ada_browser):
    response = ada_browser.client.post(
        "/settings/profile", {"csrfmiddlewaretoken": ada_browser.csrf_token(), "full_name": "<b>"}
    )
    assert response.status_code == 400
    assert NAME_NOT_SAVED in response.content.decode()
    ada.user.refresh_from_db()
    assert ada.user.full_name == "Ada Lovelace"
    # What was typed stays, tied to the error.
    field = input_tag(response.content.decode(), "full-name")
    assert 'value="&lt;b&gt;"' in field
    assert 'aria-invalid="true"' in field
    assert 'aria-describedby="settings-error"' in field


def test_a_single_passkey_gets_a_backup_recommendation(ada, ada_browser):
    html = ada_browser.get("/settings").content.decode()
    assert 'id="readiness"' in html
    assert "another method can be used" in html
    assert_ok(
        add_passkey(
            ada_browser, SoftAuthenticator(), transports=("usb",), attachment="cross-platform"
        )
    )
    assert 'id="readiness"' not in ada_browser.get("/settings").content.decode()


def test_only_synced_passkeys_get_a_backup_recommendation(db, clock):
    synced = {"backup_eligible": True, "backup_state": True, "counter_step": 0}
    grace = enrolled_person("grace@example.com", "Grace Hopper", **synced)
    browser = signed_in_browser(grace)
    assert_ok(add_passkey(browser, SoftAuthenticator(**synced), device="phone"))
    html = browser.get("/settings").content.decode()
    assert 'id="readiness"' in html
    assert "synced passkeys" in html


def test_after_adding_or_removing_the_page_offers_to_sign_out_the_others(ada, ada_browser):
    offer = 'id="offer-sign-out-others"'
    ada_browser.post_form("/settings/sessions/sign-out-others")  # the enrollment's session
    body = assert_ok(add_passkey(ada_browser, SoftAuthenticator()))
    # Only one session: nothing to offer.
    assert offer not in ada_browser.get(body["redirect"]).content.decode()

    signed_in_browser(ada)  # another browser
    assert offer in ada_browser.get(body["redirect"]).content.decode()
    assert offer in ada_browser.get("/settings?done=removed").content.decode()
    assert offer not in ada_browser.get("/settings").content.decode()


# --- Found in review -----------------------------------------------------------------------------


def test_unknown_credential_is_never_said_for_offered_credentials(ada, clock):
    """Username-first options carry decoys for unknown usernames: answering one must read
    exactly like answering a real account's credential with a bad signature."""

    def answer(username: str):
        browser = Browser()
        options = browser.post_json("/sign-in/options", {"username": username}).json()
        offered = options["publicKey"]["allowCredentials"][0]["id"]
        stranger = SoftAuthenticator()
        stranger.create(
            {
                "challenge": options["publicKey"]["challenge"],
                "rp": {"id": "localhost"},
                "user": {"id": b64url_encode(b"x")},
                "pubKeyCredParams": [{"alg": -7}],
            },
            ORIGIN,
            credential_id=b64url_decode(offered),
        )
        return browser.post_json("/sign-in/result", stranger.get(options["publicKey"], ORIGIN))

    real = answer("ada@example.com")
    unknown = answer("nobody@example.com")
    assert real.status_code == unknown.status_code == 400
    assert real.json() == unknown.json()
    assert "unknownCredential" not in unknown.json()


def test_the_step_up_is_checked_again_when_the_passkey_is_stored(ada, ada_browser, clock):
    options = ada_browser.post_json("/settings/security-methods/add/options", {"device": "phone"})
    clock.advance(301)
    credential = SoftAuthenticator().create(options.json()["publicKey"], ORIGIN)
    response = ada_browser.post_json("/settings/security-methods/add/result", credential)
    assert_failed(response, 403, VERIFY_IT_IS_YOU)
    assert Passkey.objects.filter(user=ada.user).count() == 1


def test_a_step_up_for_another_person_is_refused_after_the_signature(ada, clock):
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    ceremonies = Ceremonies(session_key="k" * 32)
    options = do_begin_step_up(ceremonies, ada.user)
    assertion = ada.authenticator.get(options, ORIGIN)
    with pytest.raises(errors.ThresholdError) as refused:
        do_finish_sign_in(ceremonies.returned(), assertion, Origin(), step_up_user=grace.user)
    assert refused.value.code == "credential_not_allowed"
    assert last_event("step_up.failed").reason == "credential_not_allowed"


@pytest.mark.parametrize(
    ("path", "kind", "action"),
    [
        ("/settings/verify", "step_up", "step_up.failed"),
        ("/settings/security-methods/add", "registration", "passkey.registration_failed"),
    ],
)
def test_a_signed_in_ceremony_is_bound_to_the_session_that_began_it(ada, path, kind, action):
    laptop, phone = Browser(), Browser()
    for browser in (laptop, phone):
        assert_ok(sign_in(browser, ada.authenticator))
    options = assert_ok(laptop.post_json(f"{path}/options", {}))["publicKey"]
    # The laptop's ceremony token, sent from Ada's other session.
    name = f"{CEREMONY_COOKIE_PREFIX}{kind}"
    phone.client.cookies[name] = laptop.client.cookies[name].value
    if kind == "step_up":
        response = ada.authenticator.get(options, ORIGIN)
    else:
        response = SoftAuthenticator().create(options, ORIGIN)
    assert_failed(phone.post_json(f"{path}/result", response), 400, "Session Expired")
    assert last_event(action).detail["detail"] == "another session's ceremony"
    assert Passkey.objects.filter(user=ada.user).count() == 1


def test_signed_out_json_endpoints_answer_in_json(browser):
    for path in ("/settings/security-methods/add/options", "/settings/security-methods/add/result"):
        assert_failed(browser.post_json(path, {}), 401, "Session Expired")


def test_a_stale_step_up_stays_stale_after_a_bad_verification(ada, ada_browser, clock):
    clock.advance(301)
    ada_browser.post_json("/settings/verify/options")
    ada_browser.post_json("/settings/verify/result", raw=b'{"type": "public-key"}')
    assert ada_browser.get("/settings/security-methods/add").status_code == 303


def test_removing_another_persons_passkey_reads_like_a_missing_one(ada, ada_browser):
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    theirs = ada_browser.post_form(f"/settings/security-methods/{grace.passkey.pk}/remove")
    missing = ada_browser.post_form(f"/settings/security-methods/{grace.passkey.pk + 99}/remove")
    assert theirs.status_code == missing.status_code == 404
    assert without_csrf(theirs.content) == without_csrf(missing.content)
    assert Passkey.objects.filter(user=grace.user).count() == 1


def test_a_long_default_name_fits_a_nickname(ada):
    passkey = ada.passkey
    passkey.authenticator_name = "Feitian ePass FIDO2-NFC Plus Series Security Key with Biometrics"
    passkey.created_user_agent = WINDOWS_EDGE
    assert len(passkey.default_name) <= 60
    assert passkey.default_name.endswith("\u2026 (Edge on Windows)")
