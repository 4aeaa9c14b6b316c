"""Passkey sign-in inside the company's own apps: OAuth 2.0 for First-Party Applications
(draft-ietf-oauth-first-party-apps, the Authorization Challenge Endpoint) at
``POST /authorize-challenge`` (threshold/sso/firstparty.py).

The app here is the test: it asks for a challenge as an Android app does, signs it with the
software authenticator under the app's ``android:apk-key-hash:`` origin (configured as
test_mobile_apps_review.py configures it), sends the response back, and exchanges the code at
``/token`` with its PKCE verifier. Nothing is mocked but the clock.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import last_event
from tests.integration.portal_support import post, staff
from tests.integration.test_portal_apps import APP
from threshold.accounts.models import Role
from threshold.cli.main import main
from threshold.sso.models import Application

pytestmark = pytest.mark.django_db


# --- The app's setting: first-party -------------------------------------------------------------


def test_apps_add_and_change_mark_an_app_first_party(db, capsys):
    assert main(["apps", "add", "Company app", "--public", "--first-party",
                 "--redirect-uri", "com.example.app:/oauth2redirect", "--json"]) == 0  # fmt: skip
    client_id = json.loads(capsys.readouterr().out)["client_id"]
    app = Application.objects.get(client_id=client_id)
    assert app.first_party
    assert last_event("app.added").detail["first_party"] is True
    assert main(["apps", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["first_party"] is True

    assert main(["apps", "change", client_id, "--no-first-party"]) == 0
    assert "Changed first_party of Company app." in capsys.readouterr().out
    app.refresh_from_db()
    assert not app.first_party
    event = last_event("app.changed")
    assert (event.detail["before"], event.detail["after"]) == (
        {"first_party": True},
        {"first_party": False},
    )
    assert main(["apps", "change", client_id, "--first-party"]) == 0
    app.refresh_from_db()
    assert app.first_party

    # An app added without it is not one.
    assert main(["apps", "add", "Wiki", "--redirect-uri", "https://wiki.example.com/cb"]) == 0
    assert not Application.objects.get(name="Wiki").first_party


def test_the_admin_portal_shows_and_changes_first_party(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    post(browser, "/admin/apps", {**APP, "first_party": "1"})
    app = Application.objects.get(name="Wiki")
    assert app.first_party
    page = browser.get(f"/admin/apps/{app.pk}").content.decode()
    assert "<dt>First-party</dt><dd>Yes" in page
    assert 'name="first_party" value="1" checked' in page

    response = post(browser, f"/admin/apps/{app.pk}/change", APP)  # the box left unticked
    assert response.status_code == 303
    app.refresh_from_db()
    assert not app.first_party
    assert last_event("app.changed").detail["changed"] == ["first_party"]
    page = browser.get(f"/admin/apps/{app.pk}").content.decode()
    assert "<dt>First-party</dt><dd>No" in page
