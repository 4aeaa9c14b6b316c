"""An outside review of the audit trail, as a security team and a SOC 2 / ISO 27001 auditor
would judge it (threshold/audit/, ``threshold audit``, the admin portal's audit page and export).

Everything is done through the real endpoints and the ``threshold`` command, in process, with the
soft authenticator and a soft Threshold Verify; then the rows it leaves are read.

Covered: completeness (sign-in success and failure by passkey, password and code, recovery code
and push; enrollment and recovery links; passkey renamed; the fallback set up; recovery codes
replaced; sign-out and timeouts; the administrator's changes to people, groups, apps and the
policy, with before and after; single sign-on tokens issued, refused, revoked; the command line),
one generic answer to the client with the precise reason in the row, no secret or whole credential
in any column of any row, the append-only rule, times in UTC, the portal's filters and export (CSV
injection). The cap on anonymous refusals (audit/capped.py) was checked by hand and behaves as
documented (the first 30 kept, one audit.refusals_capped row, the next recorded one counts the
suppressed): no test here. The passing test pins the journey's rows; each xfail is one defect.
"""

from __future__ import annotations

import base64
import csv
import getpass
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import StreamingHttpResponse
from django.test import Client

from tests.integration.conftest import (
    CLIENT_IP,
    USER_AGENT,
    Browser,
    FrozenClock,
    Person,
    assert_ok,
    enroll,
    invite,
    sign_in,
    token_of,
)
from tests.integration.portal_support import post, staff
from tests.support.authenticator import SoftAuthenticator
from tests.support.device import SoftDevice
from threshold.accounts.models import Role
from threshold.audit.models import AuditEvent
from threshold.cli.main import main as threshold
from threshold.core.encoding import b64url_encode

APP_IP = "198.51.100.9"
APP_AGENT = "WikiServer/1.0"
REDIRECT_URI = "https://wiki.example/cb"
PASSWORD = "Correct-Horse-Battery-42!"
WRONG_PASSWORD = "Hunter2-Wrong-Guess-77!"


# --- Helpers ----------------------------------------------------------------------------------


def rows_after(start: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(id__gt=start).order_by("id"))


def last_id() -> int:
    newest = AuditEvent.objects.order_by("-id").first()
    return newest.pk if newest is not None else 0


def every_column(event: AuditEvent) -> str:
    """Every column of the row as text (the detail as its JSON)."""
    return " ".join(
        str(value)
        for value in (
            event.at.isoformat(),
            event.action,
            event.reason,
            event.actor_id,
            event.subject_id,
            event.subject_label,
            event.ip,
            event.user_agent,
            event.via,
            json.dumps(event.detail),
        )
    )


def set_up_fallback(browser: Browser, clock: FrozenClock) -> tuple[str, str, list[str]]:
    """Settings: password and authenticator app; the secret, the code typed, the recovery codes."""
    page = browser.get("/settings/fallback/set-up")
    found = re.search(rb'id="totp-secret">([^<]*)<', page.content)
    assert found is not None, page.content[:500]
    secret = "".join(found.group(1).decode().split())
    code = pyotp.TOTP(secret).at(clock.now)
    done = post(
        browser,
        "/settings/fallback/set-up",
        {"password": PASSWORD, "confirm_password": PASSWORD, "code": code},
    )
    assert done.status_code == 200, done.content[:500]
    return secret, code, recovery_codes(done.content)


def recovery_codes(html: bytes) -> list[str]:
    codes = [code.decode() for code in re.findall(rb"<li><code>([^<]*)</code>", html)]
    assert len(codes) == 10
    return codes


@dataclass
class App:
    client_id: str
    secret: str

    def basic(self, secret: str | None = None) -> str:
        pair = f"{self.client_id}:{self.secret if secret is None else secret}"
        return "Basic " + base64.b64encode(pair.encode()).decode()


def add_app(admin: Browser) -> App:
    """An administrator adds a confidential app in the portal (its secret shown once)."""
    page = post(
        admin,
        "/admin/apps",
        {"name": "Wiki", "redirect_uris": REDIRECT_URI, "id_token_alg": "RS256"},
    )
    client_id = re.search(rb'id="client-id"[^>]*value="([^"]+)"', page.content)
    secret = re.search(rb'id="client-secret"[^>]*value="([^"]+)"', page.content)
    assert client_id is not None, page.content[:500]
    assert secret is not None
    return App(client_id.group(1).decode(), secret.group(1).decode())


def app_sign_in(browser: Browser, app: App) -> tuple[str, dict[str, Any]]:
    """The authorization code flow with PKCE for a signed-in browser: the code and the tokens."""
    verifier = b64url_encode(os.urandom(40))
    challenge = b64url_encode(hashlib.sha256(verifier.encode()).digest())
    answer = browser.get(
        "/authorize?"
        + "&".join(
            f"{name}={value}"
            for name, value in {
                "client_id": app.client_id,
                "response_type": "code",
                "scope": "openid email",
                "redirect_uri": REDIRECT_URI,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": "s",
                "nonce": "n",
            }.items()
        )
    )
    assert answer.status_code == 302, answer.content[:300]
    code = parse_qs(urlsplit(answer["Location"]).query)["code"][0]
    tokens = app_client().post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        HTTP_AUTHORIZATION=app.basic(),
    )
    assert tokens.status_code == 200, tokens.content
    return code, tokens.json()


def app_client() -> Client:
    """The app's server calling /token, /userinfo and /revoke."""
    return Client(REMOTE_ADDR=APP_IP, HTTP_USER_AGENT=APP_AGENT)


def export(admin: Browser, kind: str, **filters: str) -> str:
    response = admin.client.get(f"/admin/audit/export.{kind}", filters)
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(bytes(chunk) for chunk in response.streaming_content).decode()


# --- What the journey leaves ------------------------------------------------------------------


def test_a_journey_leaves_precise_attributed_rows_and_no_secret(
    ada: Person, clock: FrozenClock
) -> None:
    """A person's and an administrator's day, through the real pages: every security event has
    its row (who, about whom, from where, when, why), the client gets one generic answer while
    the row has the precise reason, and no secret used on the way is in any column of any row."""
    secrets: dict[str, str] = {}
    created, token = invite("eve@example.com", "Eve Example")
    secrets["enrollment link token"] = token
    eve = SoftAuthenticator()
    assert_ok(enroll(Browser(), token, eve))
    user = created.user

    browser = Browser()
    assert_ok(sign_in(browser, eve))
    secrets["session key"] = browser.session_key or ""
    secret, code, codes = set_up_fallback(browser, clock)
    secrets["TOTP secret"] = secret
    secrets["TOTP code"] = code
    replaced = post(browser, "/settings/fallback/recovery-codes")
    assert replaced.status_code == 200
    current = recovery_codes(replaced.content)
    for number, recovery in enumerate([*codes, *current]):
        secrets[f"recovery code {number}"] = recovery
        secrets[f"recovery code {number}, typed form"] = recovery.replace("-", "")
    passkey = user.passkeys.get()
    renamed = post(browser, f"/settings/security-methods/{passkey.pk}/rename", {"nickname": "Mine"})
    assert renamed.status_code == 303
    assert post(browser, "/sign-out").status_code == 303

    # Failures: a wrong password, a wrong code, then the password and a recovery code.
    stranger = Browser()
    refused = post(stranger, "/sign-in/password", {"username": user.username, "password": "x"})
    assert refused.status_code == 400
    secrets["wrong password"] = WRONG_PASSWORD
    assert (
        post(
            stranger, "/sign-in/password", {"username": user.username, "password": WRONG_PASSWORD}
        ).status_code
        == 400
    )
    secrets["password"] = PASSWORD
    assert (
        post(
            stranger, "/sign-in/password", {"username": user.username, "password": PASSWORD}
        ).status_code
        == 303
    )
    assert post(stranger, "/sign-in/code", {"code": "000000"}).status_code == 400
    clock.advance(31)  # the code step's wait after a wrong code
    assert post(stranger, "/sign-in/code", {"code": current[0]}).status_code == 303
    assert post(stranger, "/sign-out").status_code == 303

    # Passkey failures: one generic answer, the precise reason in each row.
    before_failures = last_id()
    phished = sign_in(Browser(), eve, origin="https://evil.example")
    forged = sign_in(Browser(), eve, tamper_signature=True)
    unknown = sign_in(
        Browser(), eve, credential=replace(eve.credentials[0], credential_id=os.urandom(16))
    )
    assert phished.status_code == forged.status_code == unknown.status_code == 400
    # (The unknown credential's answer also asks the browser to hide it: signalUnknownCredential.)
    answers = [{**r.json(), "unknownCredential": None} for r in (phished, forged, unknown)]
    assert answers[0] == answers[1] == answers[2]
    assert phished.json()["error"]["code"] == "verification_failed"
    failures = rows_after(before_failures)
    assert [(row.action, row.reason) for row in failures] == [
        ("sign_in.failed", "origin_not_allowed"),
        ("sign_in.failed", "signature_invalid"),
        ("sign_in.failed", "credential_unknown"),
    ]
    assert failures[0].detail["passkey_id"] == passkey.pk

    # An administrator: lock, unlock, a recovery link (used), a role, the policy, a group.
    root, admin = staff("root@example.com", Role.ADMINISTRATOR)
    secrets["administrator's session key"] = admin.session_key or ""
    person = f"/admin/people/{user.pk}"
    assert post(admin, f"{person}/lock", {"reason": "laptop stolen"}).status_code == 303
    assert post(admin, f"{person}/unlock").status_code == 303
    issued = post(admin, f"{person}/recovery")
    link = re.search(rb"http://localhost:8000/enroll/[A-Za-z0-9_-]+", issued.content)
    assert link is not None
    secrets["recovery link token"] = token_of(link.group(0).decode())
    new_key = SoftAuthenticator()
    assert_ok(enroll(Browser(), secrets["recovery link token"], new_key))
    assert post(admin, f"{person}/role", {"role": "auditor"}).status_code == 303
    assert post(admin, "/admin/policy", {"passkey_limit": "6"}).status_code == 303
    assert post(admin, "/admin/groups", {"name": "Finance"}).status_code == 303

    # Single sign-on: a code, tokens, /userinfo, a refresh, a wrong secret.
    app = add_app(admin)
    secrets["client secret"] = app.secret
    signed_in = Browser()
    assert_ok(sign_in(signed_in, new_key))
    secrets["SSO session key"] = signed_in.session_key or ""
    code_used, tokens = app_sign_in(signed_in, app)
    secrets["authorization code"] = code_used
    secrets["access token"] = tokens["access_token"]
    secrets["refresh token"] = tokens["refresh_token"]
    secrets["ID token"] = tokens["id_token"]
    caller = app_client()
    assert (
        caller.get("/userinfo", HTTP_AUTHORIZATION="Bearer " + tokens["access_token"]).status_code
        == 200
    )
    refreshed = caller.post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        HTTP_AUTHORIZATION=app.basic(),
    )
    assert refreshed.status_code == 200
    secrets["refreshed access token"] = refreshed.json()["access_token"]
    secrets["refreshed refresh token"] = refreshed.json()["refresh_token"]
    secrets["wrong client secret"] = "Wrong-Client-Secret-0123456789"
    assert (
        caller.post(
            "/token",
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            HTTP_AUTHORIZATION=app.basic(secrets["wrong client secret"]),
        ).status_code
        == 401
    )

    # Whole credentials: the IDs and public keys of every passkey, in every encoding.
    for stored in user.passkeys.all():
        for name, raw in (
            ("credential ID", bytes(stored.credential_id)),
            ("public key", bytes(stored.public_key)),
        ):
            secrets[f"{name} b64url"] = b64url_encode(raw)
            secrets[f"{name} base64"] = base64.b64encode(raw).decode()
            secrets[f"{name} hex"] = raw.hex()

    rows = list(AuditEvent.objects.order_by("id"))
    for name, value in secrets.items():
        assert value, name
        found = [(row.pk, row.action) for row in rows if value in every_column(row)]
        assert not found, f"the {name} is in {found}"

    # Completeness: each event, with who, about whom and from where.
    web = {"ip": CLIENT_IP, "user_agent": USER_AGENT, "via": "web"}

    def one(action: str, reason: str = "", **expected: Any) -> AuditEvent:
        matching = [row for row in rows if row.action == action and row.reason == reason]
        assert matching, f"no {action} {reason!r} row"
        row = matching[-1]
        for name, value in {**web, **expected}.items():
            assert getattr(row, name) == value, (action, name, getattr(row, name))
        return row

    for action in (
        "passkey.registered",
        "sign_in.succeeded",
        "fallback.set_up",
        "fallback.recovery_codes_replaced",
        "passkey.renamed",
        "sign_out",
        "recovery.used",
    ):
        one(action, actor_id=user.pk, subject_id=user.pk, subject_label=user.username)
    one("sign_in.failed", "password_incorrect", actor_id=None, subject_id=user.pk)
    one("sign_in.failed", "code_incorrect", actor_id=None, subject_id=user.pk)
    assert any(
        row.action == "sign_in.succeeded"
        and row.subject_id == user.pk
        and row.detail.get("method") == "password+recovery_code"
        for row in rows
    )
    root_id = root.user.pk
    locked = one("user.locked", actor_id=root_id, subject_id=user.pk)
    assert locked.detail["before"] == {"locked": False}
    assert locked.detail["lock_reason"] == "laptop stolen"
    one("user.unlocked", actor_id=root_id, subject_id=user.pk)
    one("recovery.issued", actor_id=root_id, subject_id=user.pk)
    role = one("user.role_changed", actor_id=root_id, subject_id=user.pk)
    assert (role.detail["before"], role.detail["after"]) == ({"role": ""}, {"role": "auditor"})
    policy = one("policy.changed", actor_id=root_id)
    assert policy.detail["changes"] == {"passkey_limit": {"from": 10, "to": 6}}
    one("group.added", actor_id=root_id)
    one("sso.authorized", actor_id=user.pk, subject_id=user.pk)
    app_side = {"ip": APP_IP, "user_agent": APP_AGENT}
    issued_rows = [row for row in rows if row.action == "sso.token_issued"]
    assert [row.detail["grant_type"] for row in issued_rows] == [
        "authorization_code",
        "refresh_token",
    ]
    assert all(row.ip == app_side["ip"] and row.subject_id == user.pk for row in issued_rows)

    # Times: every row in UTC, and the export says so.
    assert all(row.at.utcoffset() == timedelta(0) for row in rows)
    exported = json.loads(export(admin, "json"))
    assert len(exported) == len(rows)
    assert all(row["at"].endswith("+00:00") for row in exported)
    # The portal filters by person, action and time.
    filtered = admin.client.get(
        "/admin/audit",
        {"person": user.username, "action": "sign_in.failed", "since": "2000-01-01"},
    )
    assert filtered.status_code == 200
    shown = filtered.content.count(b"sign_in.failed</td>")
    assert shown == sum(
        1 for row in rows if row.action == "sign_in.failed" and row.subject_id == user.pk
    )

    # Append-only: UPDATE refused in the database itself.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=rows[0].pk).update(reason="edited")


# --- Defects ----------------------------------------------------------------------------------


def test_a_session_timed_out_by_cleanup_has_a_row(ada: Person, clock: FrozenClock) -> None:
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    start = last_id()
    clock.advance(settings.THRESHOLD_SESSION_IDLE_TIMEOUT + 5)
    assert threshold(["cleanup"]) == 0
    # Read before the browser comes back (whose request would find the session ended already).
    ended = [
        row
        for row in rows_after(start)
        if row.subject_id == ada.user.pk and row.action in ("session.expired", "sessions.ended")
    ]
    assert not browser.is_signed_in()
    assert ended, [(row.action, row.reason) for row in rows_after(start)]


def test_a_timed_out_session_says_which_timeout(ada: Person, clock: FrozenClock) -> None:
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    clock.advance(settings.THRESHOLD_SESSION_IDLE_TIMEOUT + 5)
    assert not browser.is_signed_in()
    row = AuditEvent.objects.filter(action="session.expired").get()
    assert re.search(r"idle|absolute|max_age", f"{row.reason} {json.dumps(row.detail)}"), (
        row.reason,
        row.detail,
    )


def test_an_app_revoking_a_token_has_a_row(ada: Person, clock: FrozenClock) -> None:
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    app = add_app(admin)
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    _, tokens = app_sign_in(browser, app)
    start = last_id()
    revoked = app_client().post(
        "/revoke",
        {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        HTTP_AUTHORIZATION=app.basic(),
    )
    assert revoked.status_code == 200
    rows = [row for row in rows_after(start) if row.detail.get("app") == app.client_id]
    assert any(row.subject_id == ada.user.pk for row in rows), rows


def test_a_wrong_client_secret_names_the_app(db: None, clock: FrozenClock) -> None:
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    app = add_app(admin)
    start = last_id()
    refused = app_client().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": "anything"},
        HTTP_AUTHORIZATION=app.basic("not-the-secret"),
    )
    assert refused.status_code == 401
    assert refused.json() == {"error": "invalid_client"}
    (row,) = rows_after(start)
    assert row.action == "sso.token_refused"
    assert row.detail["app"] == app.client_id, row.detail


def test_an_unknown_username_is_in_its_failure_row(db: None, clock: FrozenClock) -> None:
    tried = "former.employee@example.com"
    response = post(Browser(), "/sign-in/password", {"username": tried, "password": "x"})
    assert response.status_code == 400
    (row,) = AuditEvent.objects.filter(action="sign_in.failed")
    assert row.reason == "password_incorrect"
    assert tried in every_column(row), every_column(row)


def test_an_app_added_records_its_redirect_uris(db: None, clock: FrozenClock) -> None:
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    add_app(admin)
    row = AuditEvent.objects.get(action="app.added")
    assert REDIRECT_URI in json.dumps(row.detail), row.detail


def _enrolled_device(browser: Browser, clock: FrozenClock) -> SoftDevice:
    """Threshold Verify set up from Settings: the setup code, the device's redemption, the
    returned code typed back."""
    issued = post(browser, "/settings/device-app/set-up")
    code = re.search(rb'id="setup-code">([^<]+)<', issued.content)
    enrollment = re.search(rb'/settings/device-app/set-up/([^"]+)"', issued.content)
    assert code is not None
    assert enrollment is not None
    device = SoftDevice(now=lambda: clock.now)
    path = "/api/device/v1/enroll"
    redeemed = Client(REMOTE_ADDR="198.51.100.20").post(
        path,
        device.sign(path, {"setup_code": code.group(1).decode()}, with_jwk=True),
        content_type="application/jose",
    )
    assert redeemed.status_code == 200, redeemed.content
    device.device_id = redeemed.json()["device_id"]
    confirmed = post(
        browser,
        f"/settings/device-app/set-up/{enrollment.group(1).decode()}",
        {"returned_code": redeemed.json()["returned_code"]},
    )
    assert confirmed.status_code == 303
    return device


def test_an_expired_push_sign_in_has_a_failure_row(ada: Person, clock: FrozenClock) -> None:
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    _enrolled_device(browser, clock)
    start = last_id()
    waiting = Browser(REMOTE_ADDR="203.0.113.50")
    started = waiting.post_json("/sign-in/push/start", {"username": ada.user.username})
    assert started.status_code == 200
    clock.advance(200)
    assert waiting.client.get("/sign-in/push/state").json() == {"state": "expired"}
    assert waiting.post_form("/sign-in/push/finish").status_code == 400
    rows = [(row.action, row.reason) for row in rows_after(start)]
    assert ("sign_in.failed", "push_expired") in rows, rows


def test_the_csv_export_has_no_formula_behind_a_semicolon(db: None, clock: FrozenClock) -> None:
    attacker = Browser(HTTP_USER_AGENT="Mozilla/5.0;=cmd|' /C calc'!A0")
    post(attacker, "/sign-in/password", {"username": "someone@example.com", "password": "x"})
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    text = export(admin, "csv")
    assert "calc" in text
    for delimiter in (",", ";"):
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@")), (delimiter, cell)


def test_a_revocation_an_administrator_made_is_not_a_failure(
    ada: Person, clock: FrozenClock
) -> None:
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    app = add_app(admin)
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    app_sign_in(browser, app)
    assert post(admin, f"/admin/people/{ada.user.pk}/sessions/end").status_code == 303
    revoked = [
        row for row in json.loads(export(admin, "json")) if row["action"].endswith("tokens_revoked")
    ]
    assert revoked, "no sso.tokens_revoked row"
    assert [row["outcome"] for row in revoked] == ["success"] * len(revoked), revoked


def test_a_command_line_change_names_its_operator(ada: Person, clock: FrozenClock) -> None:
    assert threshold(["users", "lock", ada.user.username, "--reason", "left"]) == 0
    row = AuditEvent.objects.get(action="user.locked")
    assert row.via == "cli"
    assert row.actor_id is not None or getpass.getuser() in json.dumps(row.detail), row.detail


def test_threshold_audit_shows_who_acted(
    ada: Person, clock: FrozenClock, capsys: pytest.CaptureFixture[str]
) -> None:
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    post(admin, f"/admin/people/{ada.user.pk}/lock", {"reason": "laptop stolen"})
    capsys.readouterr()
    assert threshold(["audit", "--limit", "5"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "user.locked" in line)
    assert "root@example.com" in line, line
