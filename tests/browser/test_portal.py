"""The admin portal in Chromium: each role's pages, the help desk's lost-passkey journey, the
step-up before a change, and a deny-listed authenticator picked by name.

The server is shared by the session's browser tests: each test makes its own people, and the
one that changes the policy puts it back, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.conftest import (
    Authenticator,
    Invite,
    Person,
    Server,
    add_authenticator,
    enroll,
    open_account_menu,
    open_sign_in_with_autofill_pending,
    sign_out,
)
from tests.browser.test_fallback import set_up_fallback
from tests.browser.test_first_day import AXE, AXE_RUN_JS, AXE_TAGS

pytestmark = pytest.mark.browser

VERIFY = "Verify it\u2019s you"


def staff(server: Server, invite: Invite, page: Page, role: str) -> Person:
    """A new person with ``role``, enrolled and signed in on ``page``."""
    person = invite()
    server.cli("users", "role", person.email, role)
    enroll(page, person)
    return person


def click_verifying(page: Page, button: Locator) -> None:
    """Click a portal button; when the page asks "Verify it's you" first, verify with the
    passkey at hand, which brings the page back, and click it again."""
    before = page.url
    button.click()
    page.wait_for_load_state()
    if page.get_by_role("heading", name=VERIFY).is_visible():
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(before)
        button.click()
        page.wait_for_load_state()


def verify_now(page: Page) -> None:
    """ "Verify it's you" before the changes to come, however long ago the sign-in was."""
    page.goto("/settings/verify?next=%2Fadmin%2F")
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/")
    page.wait_for_load_state()


def axe_violations(page: Page) -> list[str]:
    page.evaluate(AXE.read_text())
    return [
        f"{page.url}: {violation['id']}: {node}"
        for violation in page.evaluate(AXE_RUN_JS, AXE_TAGS)
        for node in violation["nodes"]
    ]


def open_person(page: Page, email: str) -> None:
    page.goto("/admin/people")
    page.get_by_label("Name or email").fill(email)
    page.get_by_role("button", name="Search").click()
    page.locator("table.data").get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=2, name="Passkeys")).to_be_visible()


def test_help_desk_removes_a_lost_passkey_and_the_person_recovers(
    page: Page,
    authenticator: Authenticator,
    context: BrowserContext,
    invite: Invite,
    server: Server,
) -> None:
    # The person enrolls on their laptop, then loses it.
    person = invite()
    laptop = context.browser.new_context(base_url=server.url)
    try:
        laptop_page = laptop.new_page()
        add_authenticator(laptop, laptop_page)
        enroll(laptop_page, person)
    finally:
        laptop.close()

    staff(server, invite, page, "helpdesk")
    open_account_menu(page)
    page.locator("header").get_by_role("link", name="Admin portal").click()
    expect(page.get_by_role("heading", name="Admin portal")).to_be_visible()
    open_person(page, person.email)
    assert axe_violations(page) == []
    person_url = page.url
    # Removing it is asked first: the page names it and says she has no other way in.
    remove = page.locator("#passkeys-heading ~ .table-wrap").get_by_role(
        "link", name=re.compile(r"^Remove .+\u2026$")
    )
    remove.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("passkey \u201c")
    expect(page.locator("#remove-passkey-what")).to_contain_text("can no longer sign in with")
    expect(page.locator("#ways-left")).to_contain_text("they will need a recovery link")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(person_url)
    assert server.passkey_count(person.email) == 1
    remove.click()
    confirm_url = page.url
    # Not verified for longer than the step-up window (the enrollment verified the help
    # desk a moment ago): "Verify it's you" comes back to this question.
    server.advance_clock(301)
    page.get_by_role("button", name=re.compile("^Remove \u201c")).click()
    expect(page.get_by_role("heading", name=VERIFY)).to_be_visible()
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(confirm_url)
    assert server.passkey_count(person.email) == 1
    # The question again, saying that nothing was removed yet (nothing was typed to bring back).
    kept = page.locator("#form-kept")
    expect(kept).to_have_text(re.compile(r"^Nothing was changed yet: select \u201cRemove \u201c"))
    expect(kept).to_be_focused()
    page.get_by_role("button", name=re.compile("^Remove \u201c")).click()
    expect(page.get_by_role("status")).to_contain_text("The passkey was removed")
    assert server.passkey_count(person.email) == 0

    click_verifying(page, page.get_by_role("button", name="Issue a recovery link"))
    link = page.get_by_label("One-time link").input_value()
    assert link.startswith(f"{server.url}/enroll/")
    expect(page.get_by_role("img", name="QR code of the recovery link")).to_be_visible()
    assert axe_violations(page) == []
    removed = [row for row in server.audit(person.email) if row[0] == "passkey.removed"]
    assert removed

    # The person, on a new laptop, recovers with the link the help desk handed over.
    new_laptop = context.browser.new_context(base_url=server.url)
    try:
        new_page = new_laptop.new_page()
        add_authenticator(new_laptop, new_page)
        new_page.goto(link)
        new_page.get_by_role("button", name="Create a new passkey").click()
        new_page.wait_for_url("/?enrolled=1")
    finally:
        new_laptop.close()
    assert server.passkey_count(person.email) == 1
    assert ("recovery.used", "") in server.audit(person.email)


def test_an_auditor_reads_every_page_and_every_change_is_refused(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    person = invite()
    staff(server, invite, page, "auditor")
    for path, heading in [
        ("/admin/", "Admin portal"),
        ("/admin/people", "People"),
        ("/admin/audit", "Audit log"),
        ("/admin/readiness", "Passkey rollout readiness"),
        ("/admin/policy", "Organisation policy"),
        ("/admin/authenticators", "Authenticators"),
    ]:
        page.goto(path)
        expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()
        assert axe_violations(page) == [], path
    open_person(page, person.email)
    expect(page.get_by_role("link", name=re.compile("^Remove"))).to_have_count(0)
    expect(page.get_by_role("link", name="Deactivate\u2026")).to_have_count(0)
    expect(page.get_by_role("button", name="Issue a recovery link")).to_have_count(0)
    # A change forged with the page's own CSRF token is refused.
    user_path = page.url.split(server.url, 1)[1]
    status = page.evaluate(
        """async (path) => {
          const token = document.cookie.split("; ").find((c) => c.startsWith("threshold_csrf="))
            .split("=")[1];
          const response = await fetch(path + "/lock", {
            method: "POST",
            headers: {"X-CSRFToken": token},
            body: new URLSearchParams({reason: "forged"}),
          });
          return response.status;
        }""",
        user_path,
    )
    assert status == 403
    assert "user.locked" not in [action for action, _ in server.audit(person.email)]


def test_the_help_desk_is_told_why_not_on_a_staff_members_page(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    administrator = invite()
    server.cli("users", "role", administrator.email, "admin")
    desk = staff(server, invite, page, "helpdesk")
    open_person(page, administrator.email)
    # No button that would only be refused: one explanation instead.
    expect(page.locator("#person-refused")).to_have_text(
        f"{administrator.name} has a role in the admin portal: only an administrator can change"
        " their account or sign-in methods."
    )
    for name in ["Lock", "Issue a recovery link", "End all their sessions"]:
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_role("link", name="Deactivate\u2026")).to_have_count(0)
    # Her link was printed, not emailed: her address is not verified.
    expect(page.locator("#email-verified")).to_have_text("(not verified)")
    assert axe_violations(page) == []
    # Asked anyway (an old bookmark): the refusal, not what deactivating does.
    person_url = page.url
    page.goto(f"{person_url}/deactivate")
    expect(page.locator("#confirm-refused")).to_contain_text("only an administrator can change")
    expect(page.locator("#deactivate-what")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Deactivate"))).to_have_count(0)
    assert axe_violations(page) == []
    page.get_by_role("link", name=f"Back to {administrator.name}").click()
    page.wait_for_url(person_url)

    # Their own page: every button but Deactivate and Lock, which would be refused.
    open_person(page, desk.email)
    expect(page.get_by_role("button", name="End all their sessions")).to_be_visible()
    expect(page.get_by_role("button", name="Lock")).to_have_count(0)
    expect(page.get_by_role("link", name="Deactivate\u2026")).to_have_count(0)
    expect(page.locator("#person-refused")).to_have_count(0)
    page.goto(f"{page.url}/deactivate")
    expect(page.locator("#confirm-refused")).to_have_text("You cannot deactivate yourself.")
    expect(page.locator("#deactivate-what")).to_have_count(0)
    assert axe_violations(page) == []


def test_a_person_without_a_role_gets_404_for_the_portal(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    enroll(page, invite())
    open_account_menu(page)
    expect(page.locator("header").get_by_role("link", name="Admin portal")).to_have_count(0)
    for path in ["/admin/", "/admin/people", "/admin/audit", "/admin/policy"]:
        response = page.goto(path)
        assert response is not None
        assert response.status == 404, path


def test_a_change_without_a_fresh_step_up_asks_to_verify_first(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    person = invite()
    server.cli("invite", person.email, "--no-email")
    staff(server, invite, page, "helpdesk")
    open_person(page, person.email)
    server.advance_clock(301)  # past the policy's step-up window
    page.get_by_label("Why (for the audit log)").fill("on leave")
    page.get_by_role("button", name="Lock").click()
    expect(page.get_by_role("heading", name=VERIFY)).to_be_visible()
    assert "user.locked" not in [action for action, _ in server.audit(person.email)]
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/people/*")
    page.get_by_label("Why (for the audit log)").fill("on leave")
    page.get_by_role("button", name="Lock").click()
    expect(page.get_by_role("status")).to_contain_text("Locked")
    assert ("user.locked", "") in server.audit(person.email)


def test_a_form_sent_to_verify_first_comes_back_as_typed_and_is_sent_once_confirmed(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    """Invite someone without a fresh step-up: "Verify it's you" names the portal, and
    verifying brings the form back as typed (page.js, this tab only), with a notice that
    has the focus; nothing is sent again until the person selects Invite."""
    staff(server, invite, page, "admin")
    email = f"new-hire-{secrets.token_hex(4)}@example.com"
    page.goto("/admin/people/invite")
    # Past the step-up window (enrolling verified the administrator a moment ago).
    server.advance_clock(301)
    page.get_by_label("Work email (their username)").fill(email)
    page.get_by_label("Full name").fill("New Hire")
    page.get_by_role("button", name="Invite", exact=True).click()
    expect(page.get_by_role("heading", name=VERIFY)).to_be_visible()
    expect(page.get_by_role("link", name="Back to the admin portal")).to_be_visible()
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/people/invite")
    kept = page.locator("#form-kept")
    expect(kept).to_have_text(
        "What you typed is back. Nothing was changed yet: check it, then select "
        "\u201cInvite\u201d again."
    )
    expect(kept).to_be_focused()
    expect(page.get_by_label("Work email (their username)")).to_have_value(email)
    expect(page.get_by_label("Full name")).to_have_value("New Hire")
    assert email not in [row["USERNAME"] for row in server.people()]
    page.get_by_role("button", name="Invite", exact=True).click()
    expect(page.locator("main")).to_contain_text(email)
    assert email in [row["USERNAME"] for row in server.people()]
    # Kept once: the page shown again later is as the server sends it.
    page.goto("/admin/people/invite")
    expect(page.locator("#form-kept")).to_have_count(0)
    expect(page.get_by_label("Work email (their username)")).to_have_value("")


def test_the_policy_form_comes_back_with_every_setting_as_typed(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    """Settings whose names say "password" are settings, not passwords: they come back too."""
    staff(server, invite, page, "admin")
    page.goto("/admin/policy")
    server.advance_clock(301)
    fallback = page.locator("#f-allow_password_fallback")
    flipped = "false" if fallback.input_value() == "true" else "true"
    fallback.select_option(flipped)
    page.locator("#f-password_lockout_threshold").fill("7")
    page.get_by_role("button", name="Save the policy").click()
    expect(page.get_by_role("heading", name=VERIFY)).to_be_visible()
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/policy")
    expect(page.locator("#form-kept")).to_be_focused()
    expect(page.locator("#f-allow_password_fallback")).to_have_value(flipped)
    expect(page.locator("#f-password_lockout_threshold")).to_have_value("7")


def test_a_policy_form_kept_across_verify_still_meets_a_change_made_meanwhile(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    """The form comes back with the version it was made from (a hidden field marked
    data-keep): saving it over another administrator's change is refused, not a quiet undo."""
    staff(server, invite, page, "admin")
    page.goto("/admin/policy")
    server.advance_clock(301)
    page.locator("#f-password_lockout_threshold").fill("7")
    page.get_by_role("button", name="Save the policy").click()
    expect(page.get_by_role("heading", name=VERIFY)).to_be_visible()
    server.cli("policy", "set", "passkey_limit=9")  # another administrator, meanwhile
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/policy")
    expect(page.locator("#form-kept")).to_be_focused()
    page.get_by_role("button", name="Save the policy").click()
    alert = page.locator("#policy-meanwhile")
    expect(alert.get_by_role("heading", name="Someone else changed the policy")).to_be_visible()
    expect(alert.get_by_role("link", name="passkey_limit")).to_be_visible()
    expect(page.locator("#f-password_lockout_threshold")).to_have_value("7")
    assert axe_violations(page) == []
    # Saving again, now knowingly, saves the form as it is.
    page.get_by_role("button", name="Save the policy").click()
    expect(page.get_by_role("status")).to_have_text("The policy was saved.")


def test_a_deny_listed_authenticator_picked_by_name_is_refused_at_registration_and_sign_in(
    page: Page,
    authenticator: Authenticator,
    context: BrowserContext,
    invite: Invite,
    server: Server,
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    admin = context.browser.new_context(base_url=server.url)
    admin_page = admin.new_page()
    add_authenticator(admin, admin_page)
    try:
        staff(server, invite, admin_page, "admin")
        # A way in the deny-list leaves them: denying every administrator's authenticator
        # would be refused.
        set_up_fallback(admin_page, server)
        admin_page.goto("/admin/authenticators")
        # Chromium's virtual authenticator, by the name its passkeys were given here.
        name = admin_page.locator("#registered-heading + .table-wrap tbody th").first.inner_text()
        admin_page.get_by_label("Name or AAGUID").fill(name)
        admin_page.get_by_role("button", name="Search FIDO metadata and passkey providers").click()
        results = admin_page.get_by_role("list", name=f"Authenticators matching {name}")
        click_verifying(admin_page, results.get_by_role("button", name=f"Deny {name}").first)
        expect(admin_page.locator("#preview-summary")).to_contain_text("would no longer be allowed")
        admin_page.get_by_role("button", name="Save anyway").click()
        expect(admin_page.get_by_role("status")).to_have_text("The policy was saved.")
        assert "01020304-0506-0708-0102-030405060708" in server.cli("policy", "show")

        open_sign_in_with_autofill_pending(page)
        page.get_by_role("button", name="Sign in with a passkey").click()
        expect(page.locator("#ceremony-error-title")).to_have_text("Passkey not allowed")
        assert ("sign_in.failed", "authenticator_denied") in server.audit(person.email)

        newcomer = invite()
        page.goto(newcomer.link)
        page.get_by_role("button", name="Create a passkey").click()
        expect(page.locator("#ceremony-error-title")).to_have_text("Authenticator Not Allowed")
    finally:
        server.cli("policy", "set", "aaguid_deny_list=")
        admin.close()


def test_a_group_policy_applies_to_its_members_only(
    page: Page,
    authenticator: Authenticator,
    context: BrowserContext,
    invite: Invite,
    server: Server,
) -> None:
    member, outsider = invite(), invite()
    enroll(page, member)
    sign_out(page)
    group = f"Engineering {member.email.split('@')[0]}"
    admin = context.browser.new_context(base_url=server.url)
    other = context.browser.new_context(base_url=server.url)
    try:
        other_page = other.new_page()
        add_authenticator(other, other_page)
        enroll(other_page, outsider)
        sign_out(other_page)

        admin_page = admin.new_page()
        add_authenticator(admin, admin_page)
        staff(server, invite, admin_page, "admin")
        verify_now(admin_page)
        admin_page.goto("/admin/groups")
        admin_page.get_by_label("Name").fill(group)
        admin_page.get_by_role("button", name="Add the group").click()
        expect(admin_page.get_by_role("heading", level=1, name=group)).to_be_visible()
        admin_page.get_by_label("Add someone (their email)").fill(member.email)
        admin_page.get_by_role("button", name=f"Add to {group}").click()
        expect(admin_page.get_by_role("status")).to_have_text("Added to the group.")
        # Chromium's virtual authenticators share one AAGUID: deny it to the group only.
        admin_page.get_by_label("aaguid_deny_list").fill("01020304-0506-0708-0102-030405060708")
        admin_page.get_by_role("button", name=f"Save {group}\u2019s rules").click()
        expect(admin_page.locator("#preview-summary")).to_contain_text(
            "1 passkey of 1 person would no longer be allowed"
        )
        admin_page.get_by_role("button", name="Save anyway").click()
        expect(admin_page.get_by_role("status")).to_have_text("The group\u2019s rules were saved.")
        assert axe_violations(admin_page) == []

        open_sign_in_with_autofill_pending(page)
        page.get_by_role("button", name="Sign in with a passkey").click()
        expect(page.locator("#ceremony-error-title")).to_have_text("Passkey not allowed")
        assert ("sign_in.failed", "authenticator_denied") in server.audit(member.email)

        # The same authenticator outside the group signs in (by autofill, at once).
        other_page.goto("/sign-in")
        other_page.wait_for_url("/")
        expect(other_page.get_by_role("heading", level=1)).to_be_visible()

        # Removing the group is asked first; Cancel goes back, the danger button removes it.
        admin_page.get_by_role("link", name=f"Remove {group}…").click()
        expect(admin_page.get_by_role("heading", level=1)).to_have_text(f"Remove {group}?")
        expect(admin_page.locator("#remove-group-what")).to_contain_text(f"1 member is in {group}.")
        assert axe_violations(admin_page) == []
        admin_page.get_by_role("link", name="Cancel").click()
        expect(admin_page.get_by_role("heading", level=1, name=group)).to_be_visible()
        admin_page.get_by_role("link", name=f"Remove {group}…").click()
        admin_page.get_by_role("button", name=f"Remove {group}").click()
        expect(admin_page.get_by_role("heading", level=1, name="Groups")).to_be_visible()
        expect(admin_page.get_by_role("link", name=group, exact=True)).to_have_count(0)
        assert ("group.removed", "") in server.audit()
    finally:
        with contextlib.suppress(AssertionError):  # not there if the test failed before
            server.cli("groups", "remove", group)
        admin.close()
        other.close()


def test_rotating_an_apps_secret_and_removing_it_are_asked_first(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    name = f"Wiki {secrets.token_hex(3)}"
    added = json.loads(
        server.cli(
            "apps", "add", name, "--redirect-uri", "https://wiki.example.com/callback", "--json"
        )
    )
    try:
        staff(server, invite, page, "admin")
        verify_now(page)
        page.goto("/admin/apps")
        page.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
        app_url = page.url

        # Its settings, changed in place: the form keeps the rest as it was.
        assert axe_violations(page) == []
        page.get_by_label("Initiate-login URI").fill("https://wiki.example.com/login")
        page.get_by_role("button", name="Save the settings").click()
        expect(page.get_by_role("status")).to_have_text("Saved: the app\u2019s settings.")
        expect(page.get_by_label("Initiate-login URI")).to_have_value(
            "https://wiki.example.com/login"
        )
        expect(page.get_by_label("Redirect URIs (one per line)", exact=True)).to_have_value(
            "https://wiki.example.com/callback"
        )
        assert ("app.changed", "") in server.audit()
        page.goto(app_url)

        # Rotating the secret: asked first; Cancel goes back; the danger button shows it once.
        page.get_by_role("link", name="Rotate the secret\u2026").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Rotate {name}\u2019s secret?")
        expect(page.locator("#rotate-secret-what")).to_contain_text(
            f"The current secret stops working at once: {name} can\u2019t sign anyone in"
        )
        assert axe_violations(page) == []
        page.get_by_role("link", name="Cancel").click()
        page.wait_for_url(app_url)
        assert "app.secret_rotated" not in [action for action, _ in server.audit()]
        page.get_by_role("link", name="Rotate the secret\u2026").click()
        page.get_by_role("button", name="Rotate the secret").click()
        expect(page.get_by_role("status")).to_contain_text("A new secret")
        secret = page.get_by_label("Client secret").input_value()
        assert secret
        assert secret != added["client_secret"]
        assert ("app.secret_rotated", "") in server.audit()
        page.get_by_role("link", name=f"Back to {name}").click()

        # Removing it: asked first, saying it can't be undone; Cancel goes back.
        page.get_by_role("link", name=f"Remove {name}\u2026").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Remove {name}?")
        expect(page.locator("#remove-app-what")).to_contain_text("stops working at once")
        expect(page.locator("#remove-app-what")).to_contain_text("This can\u2019t be undone")
        assert axe_violations(page) == []
        page.get_by_role("link", name="Cancel").click()
        page.wait_for_url(app_url)
        assert added["client_id"] in server.cli("apps", "list")
        page.get_by_role("link", name=f"Remove {name}\u2026").click()
        page.get_by_role("button", name=f"Remove {name}").click()
        expect(page.get_by_role("heading", level=1, name="Apps")).to_be_visible()
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
        assert ("app.removed", "") in server.audit()
        assert added["client_id"] not in server.cli("apps", "list")
    finally:
        with contextlib.suppress(AssertionError):  # gone already if the test got that far
            server.cli("apps", "remove", added["client_id"])


PHONE = {"width": 375, "height": 740}


def scrolls_sideways(page: Page) -> int:
    """How many pixels the page is wider than the viewport (0: it fits): a wide table scrolls
    inside its own box, never the page."""
    return page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


def test_every_portal_page_fits_a_phone_and_marks_its_section(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    page.set_viewport_size(PHONE)
    admin = staff(server, invite, page, "admin")
    verify_now(page)
    open_person(page, admin.email)  # their passkeys, sessions and events: wide tables
    person_url = page.url.split(server.url, 1)[1]
    for path, section in [
        ("/admin/", "Admin portal"),
        ("/admin/people", "People"),
        (person_url, "People"),
        ("/admin/people/invite", "People"),
        ("/admin/groups", "Groups"),
        ("/admin/apps", "Apps"),
        ("/admin/audit", "Audit log"),
        ("/admin/policy", "Policy"),
        ("/admin/authenticators", "Authenticators"),
        ("/admin/readiness", "Readiness"),
    ]:
        page.goto(path)
        nav = page.get_by_role("navigation", name="Admin portal")
        expect(nav.locator('[aria-current="page"]')).to_have_text(section)
        assert scrolls_sideways(page) == 0, path
        assert axe_violations(page) == [], path

    # A policy setting refused: its field is marked invalid and described by the error.
    page.goto("/admin/policy")
    page.get_by_label("passkey_limit").fill("ten")
    page.get_by_role("button", name="Save the policy").click()
    expect(page.locator("#policy-error")).to_contain_text("The policy was not saved")
    field = page.get_by_label("passkey_limit")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(
        re.compile("^passkey_limit must be a whole number")
    )
    page.locator("#policy-error").get_by_role("link").click()
    expect(field).to_be_focused()
    assert scrolls_sideways(page) == 0
    assert axe_violations(page) == []

    # An invite on this server (email is written to files): its link, shown once, fits too.
    newcomer = f"new-{secrets.token_hex(4)}@example.com"
    page.goto("/admin/people/invite")
    page.get_by_label("Work email (their username)").fill(newcomer)
    page.get_by_label("Full name").fill("New Person")
    page.get_by_role("button", name="Invite", exact=True).click()
    expect(page.locator("#invite-link-note")).to_contain_text(
        "Email delivery is not set up on this server"
    )
    assert page.get_by_label("One-time link").input_value().startswith(f"{server.url}/enroll/")
    expect(
        page.get_by_role("navigation", name="Admin portal").locator('[aria-current="page"]')
    ).to_have_text("People")
    assert scrolls_sideways(page) == 0
    assert axe_violations(page) == []


def test_a_signed_out_administrator_signs_in_and_lands_back_on_the_portal_page(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    staff(server, invite, page, "admin")
    sign_out(page)
    response = page.goto("/admin/people?status=invited")
    assert response is not None
    # Sent to sign in, where the passkey's autofill signs in at once, and back.
    assert response.request.redirected_from is not None
    assert response.url == f"{server.url}/sign-in?next=/admin/people%3Fstatus%3Dinvited"
    page.wait_for_url(f"{server.url}/admin/people?status=invited")
    expect(page.get_by_role("heading", level=1, name="People")).to_be_visible()


def test_group_rules_that_cut_off_the_administrator_making_them_need_a_tick(
    page: Page,
    authenticator: Authenticator,
    context: BrowserContext,
    invite: Invite,
    server: Server,
) -> None:
    # Another administrator, outside the group, keeps a way in (else the change is refused).
    other = context.browser.new_context(base_url=server.url)
    try:
        other_page = other.new_page()
        add_authenticator(other, other_page)
        staff(server, invite, other_page, "admin")
    finally:
        other.close()
    admin = staff(server, invite, page, "admin")
    group = f"Only me {admin.email.split('@')[0]}"
    server.cli("groups", "add", group)
    server.cli("groups", "add-member", group, admin.email)
    try:
        verify_now(page)
        page.goto("/admin/groups")
        page.get_by_role("link", name=group, exact=True).click()
        # Chromium's virtual authenticator: the administrator's only passkey.
        page.get_by_label("aaguid_deny_list").fill("01020304-0506-0708-0102-030405060708")
        page.get_by_role("button", name=f"Save {group}\u2019s rules").click()
        expect(page.locator("#preview-self")).to_contain_text(
            "You would no longer be able to sign in"
        )
        assert axe_violations(page) == []
        # "Save anyway" without the tick: the browser asks for it, and nothing is saved.
        preview_url = page.url
        tick = page.get_by_label(
            "I understand that I will not be able to sign in again once this session ends"
        )
        page.get_by_role("button", name="Save anyway").click()
        assert tick.evaluate("(box) => !box.validity.valid")
        assert page.url == preview_url
        expect(page.locator("#preview-self")).to_be_visible()  # the form was not sent
        tick.check()
        page.get_by_role("button", name="Save anyway").click()
        expect(page.get_by_role("status")).to_have_text("The group\u2019s rules were saved.")
        expect(page.get_by_label("aaguid_deny_list")).to_have_value(
            "01020304-0506-0708-0102-030405060708"
        )
    finally:
        server.cli("groups", "remove", group)


def test_a_double_click_on_invite_sends_one_invite(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    """A double click sent the form twice: two emails, and the second link replaced the first
    (each new link does, on purpose), so the first email's link was dead (page.js sends a
    changing form once)."""
    staff(server, invite, page, "admin")
    verify_now(page)
    email = f"double-{secrets.token_hex(4)}@example.com"
    page.goto("/admin/people/invite")
    page.get_by_label("Work email (their username)").fill(email)
    page.get_by_label("Full name").fill("Double Click")
    before = len(server.emails())
    # Two clicks a moment apart: the second after the first one's request left and before
    # its answer came (a browser folds two submissions within one task into one navigation
    # by itself). Not awaited: the answer's page may replace this one first.
    page.evaluate(
        """() => {
            const invite = [...document.querySelectorAll("button")].find(
                (b) => b.textContent.trim() === "Invite");
            invite.click();
            setTimeout(() => invite.click(), 5);
        }"""
    )
    expect(page.locator("main")).to_contain_text(email)
    page.wait_for_load_state("networkidle")
    sent = [mail for mail in server.emails()[before:] if email in mail]
    assert len(sent) == 1, f"{len(sent)} invites emailed to {email}"
