"""What a new person's walk through every page in Chromium found, turned into checks of the
pages themselves: the way back from an address a form posts to, Home's word on a passkey that
may have been copied, an administrator's own page, the sign-out page when signed out already,
and the error pages' button for someone signed in."""

from __future__ import annotations

import pytest

from tests.integration.conftest import CSRF_COOKIE, Browser, assert_ok, sign_in
from tests.integration.portal_support import staff
from threshold.accounts.models import Role
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db


def signed_in(person) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return browser


@pytest.mark.parametrize(
    "path",
    ["/admin/people/import", "/admin/people/{me}/recovery", "/admin/people/{me}/lock"],
)
def test_a_forms_answer_opened_again_says_so_and_leads_home(db, path):
    # The import's results and a recovery link are shown on the address the form posted
    # to; opened again (reloaded, from the history), that address has no page.
    boss, browser = staff("boss@example.com", Role.ADMINISTRATOR)
    page = browser.get(path.format(me=boss.user.pk), HTTP_ACCEPT="text/html")
    assert page.status_code == 405
    assert page["Allow"] == "POST"
    html = page.content.decode()
    assert "<h1>Page No Longer Available</h1>" in html
    assert "Page Not Found" not in html
    assert '<a class="button" href="/">Go to Home</a>' in html


def test_a_rename_address_opened_again_in_settings_says_so(ada):
    browser = signed_in(ada)
    page = browser.get(f"/settings/security-methods/{ada.passkey.pk}/rename")
    assert page.status_code == 405
    assert "<h1>Page No Longer Available</h1>" in page.content.decode()


def test_a_missing_page_leads_a_signed_in_person_home_and_anyone_else_to_sign_in(ada):
    mine = signed_in(ada).get("/no/such/page").content.decode()
    assert '<a class="button" href="/">Go to Home</a>' in mine
    assert "Go to sign-in" not in mine
    theirs = Browser().get("/no/such/page").content.decode()
    assert '<a class="button" href="/sign-in">Go to sign-in</a>' in theirs
    assert "start again from the home page" in theirs


def test_home_says_a_passkey_may_have_been_copied(ada):
    browser = signed_in(ada)
    assert "may have been copied" not in browser.get("/").content.decode()
    Passkey.objects.filter(pk=ada.passkey.pk).update(is_possibly_cloned=True)
    home = browser.get("/").content.decode()
    assert "This passkey may have been copied" in home
    settings_page = browser.get("/settings").content.decode()
    assert settings_page.count("This passkey may have been copied") == 1


def test_an_administrators_own_page_says_why_there_is_no_lock_or_deactivate(db):
    boss, browser = staff("boss@example.com", Role.ADMINISTRATOR)
    other, _ = staff("other@example.com", Role.HELP_DESK)
    own = browser.get(f"/admin/people/{boss.user.pk}").content.decode()
    assert "You cannot lock or deactivate your own account" in own
    assert '<div class="inline-forms">\n  \n  </div>' not in own
    theirs = browser.get(f"/admin/people/{other.user.pk}").content.decode()
    assert "You cannot lock or deactivate your own account" not in theirs
    assert f'action="/admin/people/{other.user.pk}/lock"' in theirs


def test_the_sign_out_page_of_someone_signed_out_already_says_so(ada):
    anonymous = Browser()
    page = anonymous.get("/sign-out")
    html = page.content.decode()
    assert page.status_code == 200
    assert "<h1>You are signed out</h1>" in html
    assert "Stay signed in" not in html
    assert CSRF_COOKIE in anonymous.client.cookies  # as the sign-in page sets it
    # Signed in, it still asks first.
    asked = signed_in(ada).get("/sign-out").content.decode()
    assert "Stay signed in" in asked
