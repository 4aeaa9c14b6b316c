"""The admin portal's apps pages: the single sign-on CLI's actions (add, rotate the secret,
assign to groups, remove), the secret shown once, bad input refused with nothing stored."""

from __future__ import annotations

import html

import pytest
from django.test import Client

from tests.integration.conftest import enrolled_person, last_event
from tests.integration.portal_support import post, staff
from tests.integration.test_sso import add_app, full_flow, refresh, signed_in
from threshold.accounts.models import Role
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.groups.actions import do_add_group, do_add_member, do_remove_member
from threshold.groups.models import Group
from threshold.sso.actions import do_assign_app
from threshold.sso.models import Application
from threshold.sso.validator import hash_secret

pytestmark = pytest.mark.django_db

APP = {
    "name": "Wiki",
    "redirect_uris": "https://wiki.example.com/callback\nhttps://wiki.example.com/cb2",
    "post_logout_uris": "",
    "backchannel_logout_uri": "",
    "initiate_login_uri": "https://wiki.example.com/login",
    "id_token_alg": "ES256",
}


def _secret(page: bytes) -> str:
    return (
        page.decode().split('id="client-secret" type="text" readonly value="', 1)[1].split('"')[0]
    )


def test_an_administrator_adds_an_app_and_sees_its_secret_once(db):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    response = post(browser, "/admin/apps", APP)
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    app = Application.objects.get(name="Wiki")
    secret = _secret(response.content)
    assert app.client_secret == hash_secret(secret)
    assert secret not in app.client_secret
    assert app.redirect_uris.split() == APP["redirect_uris"].split()
    assert app.algorithm == "ES256"
    added = last_event("app.added")
    assert (added.actor, added.detail["app"]) == (admin.user, app.client_id)
    assert secret not in browser.get(f"/admin/apps/{app.pk}").content.decode()

    rotated = post(browser, f"/admin/apps/{app.pk}/secret")
    new_secret = _secret(rotated.content)
    assert new_secret != secret
    app.refresh_from_db()
    assert app.client_secret == hash_secret(new_secret)
    assert last_event("app.secret_rotated").actor == admin.user


def test_an_app_is_assigned_to_groups_and_removed(db):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    engineering = do_add_group("Engineering", Origin.cli())
    post(browser, "/admin/apps", APP)
    app = Application.objects.get(name="Wiki")
    response = post(
        browser, f"/admin/apps/{app.pk}/assign", {"who": "groups", "group": [str(engineering.pk)]}
    )
    assert response.status_code == 303
    app.refresh_from_db()
    assert not app.for_everyone
    assert list(app.groups.values_list("name", flat=True)) == ["Engineering"]
    assigned = last_event("app.assigned")
    assert (assigned.actor, assigned.detail["groups"]) == (admin.user, ["Engineering"])
    assert post(browser, f"/admin/apps/{app.pk}/remove").status_code == 303
    assert not Application.objects.exists()
    # The audit log's app filter finds its rows.
    page = browser.get(f"/admin/audit?app={app.client_id}").content.decode()
    assert page.count("<td>app.") == 3


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"redirect_uris": ""}, "An app needs at least one"),
        ({"redirect_uris": "http://wiki.example.com/cb"}, "must be https"),
        ({"redirect_uris": "not a url"}, "is not an http(s) URL"),
        ({"name": "<b>"}, "That app name can&#x27;t be used"),
        ({"id_token_alg": "HS256"}, "must be one of"),
        # What URLValidator lets through: a NUL (PostgreSQL cannot store one), a text-direction
        # override (a URL that reads as another).
        *(
            ({field: f"https://wiki.example.com/cb{bad}x"}, "is not an http(s) URL")
            for field in (
                "redirect_uris",
                "post_logout_uris",
                "backchannel_logout_uri",
                "initiate_login_uri",
            )
            for bad in ("\x00", "\u202e")
        ),
    ],
)
def test_bad_app_input_adds_nothing(db, changes, words):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    response = post(browser, "/admin/apps", {**APP, **changes})
    assert response.status_code == 400
    assert words in response.content.decode()
    assert b"Nothing was added" in response.content
    assert not Application.objects.exists()


def test_bad_assignments_change_nothing(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    post(browser, "/admin/apps", APP)
    app = Application.objects.get(name="Wiki")
    for data in [{"who": "groups"}, {"who": "groups", "group": ["999999"]}]:
        response = post(browser, f"/admin/apps/{app.pk}/assign", data)
        assert response.status_code == 400
    app.refresh_from_db()
    assert app.for_everyone


def test_apps_are_the_administrators_and_the_auditors_to_read(db):
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    assert desk.get("/admin/apps").status_code == 404
    _, auditor = staff("audit@example.com", Role.AUDITOR)
    assert auditor.get("/admin/apps").status_code == 200
    assert post(auditor, "/admin/apps", APP).status_code == 403
    assert not Application.objects.exists()


@pytest.mark.parametrize(
    ("change", "reason"), [("deactivate", "deactivated"), ("sessions/end", "sessions_ended")]
)
def test_deactivating_or_ending_sessions_in_the_portal_ends_app_tokens(ada, change, reason):
    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    assert post(browser, f"/admin/people/{ada.user.pk}/{change}").status_code == 303
    revoked = last_event("sso.tokens_revoked")
    assert (revoked.subject, revoked.reason) == (ada.user, reason)
    assert refresh(app, tokens["refresh_token"]).status_code == 400
    userinfo = Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == 401


def _words(page: bytes) -> str:
    return " ".join(page.decode().replace("&rsquo;", "\u2019").split())


def test_removing_a_group_says_first_what_it_does_to_its_members_and_apps(db):
    """The group page's "Remove" leads to a page that asks (GET: nothing removed) and says
    how many members the group has, which apps it gives and how many members lose them;
    the group page says what taking a member out does."""
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    finance = do_add_group("Finance", Origin.cli())
    audit = do_add_group("Audit", Origin.cli())
    people = [enrolled_person(f"p{n}@example.com", f"Person {n}") for n in range(3)]
    for person in people:
        do_add_member(finance, person.user, Origin.cli())
    # The third also reaches one of the apps through another group, the second both.
    do_add_member(audit, people[2].user, Origin.cli())
    do_add_member(audit, people[1].user, Origin.cli())
    confirm = f"/admin/groups/{finance.pk}/remove"
    group_page = _words(browser.get(f"/admin/groups/{finance.pk}").content)
    assert "Its members stay; only the group goes." in group_page
    assert f'href="{confirm}"' in group_page
    assert 'id="member-apps"' not in group_page
    page = _words(browser.get(confirm).content)
    assert "Remove Finance?" in page
    assert "3 members are in Finance. They stay, with their passkeys;" in page
    assert 'id="remove-group-apps"' not in page
    assert f'href="/admin/groups/{finance.pk}">Cancel</a>' in page

    ledger = add_app(name="Ledger")
    do_assign_app(ledger.application, Origin.cli(), everyone=False, group_names=["Finance"])
    payroll = add_app(name="Payroll")
    do_assign_app(payroll.application, Origin.cli(), everyone=False, group_names=["Finance"])
    wiki = add_app(name="Wiki")  # everyone's: no group gives it
    do_assign_app(wiki.application, Origin.cli(), everyone=True)
    group_page = _words(browser.get(f"/admin/groups/{finance.pk}").content)
    assert "Its members stay, but they lose the apps only this group gives them." in group_page
    assert (
        "Taking someone out of Finance signs them out of Ledger and Payroll at once, unless"
        " another of their groups gives them those apps."
    ) in group_page
    page = _words(browser.get(confirm).content)
    assert (
        "2 apps are assigned to Finance (Ledger, Payroll). 3 members will be signed out of"
        " them at once and can\u2019t sign in to them again unless another group gives them"
        " access."
    ) in page

    # Audit gives Payroll too: the second and third keep it, the first loses both.
    do_assign_app(
        payroll.application, Origin.cli(), everyone=False, group_names=["Finance", "Audit"]
    )
    page = _words(browser.get(confirm).content)
    assert "3 members will be signed out" in page  # all three lose Ledger
    do_assign_app(
        ledger.application, Origin.cli(), everyone=False, group_names=["Finance", "Audit"]
    )
    page = _words(browser.get(confirm).content)
    assert "1 member will be signed out of them at once" in page
    do_remove_member(finance, people[0].user, Origin.cli())
    page = _words(browser.get(confirm).content)
    assert "2 members are in Finance." in page
    assert (
        "No member loses access: each is also in another group those apps are assigned to."
    ) in page
    # Asking removed nothing.
    assert Group.objects.filter(pk=finance.pk).exists()


def test_the_help_desk_reads_no_member_note_it_cannot_act_on(db):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    finance = do_add_group("Finance", Origin.cli())
    ledger = add_app(name="Ledger")
    do_assign_app(ledger.application, Origin.cli(), everyone=False, group_names=["Finance"])
    page = _words(browser.get(f"/admin/groups/{finance.pk}").content)
    assert "Taking someone out of Finance" not in page


# --- Asked first: rotating the secret, removing the app ----------------------------------------


def _read(page: bytes) -> str:
    return " ".join(html.unescape(page.decode()).split())


FORM = b'<form method="post">'


def _audited() -> list[int]:
    return list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True))


def test_rotating_the_secret_is_asked_first(db):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    wiki = add_app(name="Wiki")
    confirm = f"/admin/apps/{wiki.application.pk}/secret"
    app_page = _read(browser.get(f"/admin/apps/{wiki.application.pk}").content)
    assert f'<a class="button secondary" href="{confirm}">Rotate the secret\u2026</a>' in app_page
    audited = _audited()
    asked = browser.get(confirm)
    assert asked.status_code == 200
    page = _read(asked.content)
    assert "<h1>Rotate Wiki\u2019s secret?</h1>" in page
    assert (
        "The current secret stops working at once: Wiki can\u2019t sign anyone in, or renew"
        " anyone\u2019s sign-in, until it is configured with the new one."
    ) in page
    assert "The next page shows the new secret once" in page
    assert FORM in asked.content
    assert f'href="/admin/apps/{wiki.application.pk}">Cancel</a>' in page
    # Asking changed nothing: the secret still works, nothing was audited.
    wiki.application.refresh_from_db()
    assert wiki.application.client_secret == hash_secret(wiki.client_secret)
    assert _audited() == audited

    rotated = post(browser, confirm)
    assert rotated.status_code == 200
    wiki.application.refresh_from_db()
    assert wiki.application.client_secret == hash_secret(_secret(rotated.content))
    assert last_event("app.secret_rotated").actor == admin.user


def test_a_public_app_has_no_secret_to_rotate_even_when_asked(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    public = add_app(name="Mobile", public=True)
    confirm = f"/admin/apps/{public.application.pk}/secret"
    assert (
        f'href="{confirm}"'.encode()
        not in browser.get(f"/admin/apps/{public.application.pk}").content
    )
    audited = _audited()
    for response in (browser.get(confirm), post(browser, confirm)):
        assert response.status_code == 409
        assert b"Mobile is a public app: it has no secret." in response.content
    assert _audited() == audited


def test_removing_an_app_is_asked_first(db):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    wiki = add_app(name="Wiki")
    confirm = f"/admin/apps/{wiki.application.pk}/remove"
    app_page = _read(browser.get(f"/admin/apps/{wiki.application.pk}").content)
    assert f'<a class="button danger" href="{confirm}">Remove Wiki\u2026</a>' in app_page
    audited = _audited()
    asked = browser.get(confirm)
    assert asked.status_code == 200
    page = _read(asked.content)
    assert "<h1>Remove Wiki?</h1>" in page
    for words in [
        "issued to Wiki stops working at once, and nobody can sign in to it with",
        "Wiki is not told: anyone signed in to it stays signed in there until its own session ends",
        "This can\u2019t be undone: adding it again gives it a new client ID and secret",
    ]:
        assert words in page
    assert FORM in asked.content
    assert "Remove Wiki</button>" in page
    assert f'href="/admin/apps/{wiki.application.pk}">Cancel</a>' in page
    assert Application.objects.filter(pk=wiki.application.pk).exists()
    assert _audited() == audited

    assert post(browser, confirm).status_code == 303
    assert not Application.objects.filter(pk=wiki.application.pk).exists()
    assert last_event("app.removed").actor == admin.user


def test_apps_that_do_not_exist_are_404_when_asked_too(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    add_app(name="Wiki")
    audited = _audited()
    for path in [
        "/admin/apps/999999/secret",
        "/admin/apps/999999/remove",
        f"/admin/apps/{2**64}/remove",
    ]:
        assert browser.get(path).status_code == 404, path
        assert post(browser, path).status_code == 404, path
    assert Application.objects.count() == 1
    assert _audited() == audited


def test_the_auditor_reads_what_an_apps_change_would_do_without_a_form(db):
    _, auditor = staff("audit@example.com", Role.AUDITOR)
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    wiki = add_app(name="Wiki")
    secret = wiki.application.client_secret
    audited = _audited()
    for path in [
        f"/admin/apps/{wiki.application.pk}/secret",
        f"/admin/apps/{wiki.application.pk}/remove",
    ]:
        read = auditor.get(path)
        assert read.status_code == 200, path
        assert FORM not in read.content, path
        assert f'href="/admin/apps/{wiki.application.pk}">Back to Wiki</a>'.encode() in read.content
        assert post(auditor, path).status_code == 403, path
        # Apps are not the help desk's to read at all.
        assert desk.get(path).status_code == 404, path
    wiki.application.refresh_from_db()
    assert wiki.application.client_secret == secret
    assert _audited() == audited


def test_an_administrator_changes_an_apps_settings(db):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    post(browser, "/admin/apps", APP)
    app = Application.objects.get(name="Wiki")
    secret, client_id = app.client_secret, app.client_id
    page = browser.get(f"/admin/apps/{app.pk}").content.decode()
    # What the app's own configuration needs: the issuer and where its endpoints are listed.
    assert "<dt>Issuer</dt><dd><code>http://localhost:8000</code></dd>" in page
    assert 'href="http://localhost:8000/.well-known/openid-configuration"' in page
    # The form starts from the settings as they are.
    assert "https://wiki.example.com/callback\nhttps://wiki.example.com/cb2</textarea>" in page

    changed = {
        **APP,
        "name": "Team wiki",
        "redirect_uris": "https://wiki.example.com/callback\nhttps://wiki.example.org/cb",
        "require_consent": "1",
    }
    response = post(browser, f"/admin/apps/{app.pk}/change", changed)
    assert response.status_code == 303
    assert response["Location"] == f"/admin/apps/{app.pk}?done=changed"
    app.refresh_from_db()
    assert (app.name, app.client_id, app.client_secret) == ("Team wiki", client_id, secret)
    assert app.redirect_uris.split() == [
        "https://wiki.example.com/callback",
        "https://wiki.example.org/cb",
    ]
    assert (app.require_consent, app.skip_authorization, app.algorithm) == (True, False, "ES256")
    event = last_event("app.changed")
    assert (event.actor, event.detail["app"]) == (admin.user, client_id)
    assert event.detail["changed"] == ["name", "redirect_uris", "require_consent"]
    assert event.detail["before"]["name"] == "Wiki"
    assert event.detail["after"]["name"] == "Team wiki"
    assert event.detail["before"]["redirect_uris"] == APP["redirect_uris"].split()
    assert event.detail["after"]["require_consent"] is True
    assert "Saved: the app\u2019s settings." in browser.get(response["Location"]).content.decode()

    # The same settings again: nothing to store, nothing audited.
    before = AuditEvent.objects.count()
    assert post(browser, f"/admin/apps/{app.pk}/change", changed).status_code == 303
    assert AuditEvent.objects.count() == before


def test_a_bad_change_keeps_what_was_typed_and_changes_nothing(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    post(browser, "/admin/apps", APP)
    app = Application.objects.get(name="Wiki")
    before = AuditEvent.objects.count()
    typed = {**APP, "name": "Team wiki", "redirect_uris": "http://wiki.example.com/cb"}
    response = post(browser, f"/admin/apps/{app.pk}/change", typed)
    assert response.status_code == 400
    page = response.content.decode()
    assert "must be https" in page
    assert "Nothing changed." in page
    assert 'value="Team wiki"' in page
    assert (
        'name="redirect_uris" rows="3" required aria-invalid="true"'
        ' aria-describedby="app-form-error">http://wiki.example.com/cb</textarea>'
    ) in page
    assert 'id="app-form-error"' in page
    app.refresh_from_db()
    assert (app.name, app.redirect_uris.split()) == ("Wiki", APP["redirect_uris"].split())
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    "field", ["redirect_uris", "post_logout_uris", "backchannel_logout_uri", "initiate_login_uri"]
)
def test_a_control_character_in_a_uri_changes_nothing(db, field):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    post(browser, "/admin/apps", APP)
    app = Application.objects.get(name="Wiki")
    before = AuditEvent.objects.count()
    response = post(
        browser, f"/admin/apps/{app.pk}/change", {**APP, field: "https://wiki.example.com/\x00"}
    )
    assert response.status_code == 400
    assert f'name="{field}"' in response.content.decode()
    assert "is not an http(s) URL" in response.content.decode()
    assert AuditEvent.objects.count() == before


def test_only_an_administrator_changes_an_app(db):
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    post(admin, "/admin/apps", APP)
    app = Application.objects.get(name="Wiki")
    _, auditor = staff("auditor@example.com", Role.AUDITOR)
    assert "Save the settings" not in auditor.get(f"/admin/apps/{app.pk}").content.decode()
    response = post(auditor, f"/admin/apps/{app.pk}/change", {**APP, "name": "Mine"})
    assert response.status_code == 403
    app.refresh_from_db()
    assert app.name == "Wiki"
