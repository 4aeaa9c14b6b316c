"""A new person's first day, at a desktop's and a phone's width: every page fits and is accessible.

The walk: the invite link, a passkey, the home page, Settings (the last-method guard, "Set up
another", a password and authenticator app with its recovery codes), sign out, sign in with the
password and a code (the "Set up a passkey" prompt), sign out, and sign in with the passkey after
a first attempt fails. On every page it stops at:

- layout: no element sticks out of its container, or out of the viewport, sideways;
- accessibility: axe-core (the npm package, installed by `make node-deps`, which `make test` runs)
  reports no violation of its WCAG 2.0/2.1/2.2 A and AA rules, `color-contrast` among them;
- headings are sized by level (every h2 larger than every h3, ...);
- one link style: every text link has the same colour and underline, and everything the Tab key
  reaches shows the same focus ring.

Problems are collected over the whole walk and reported together.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    REPO_ROOT,
    Authenticator,
    Invite,
    Server,
    open_account_menu,
    open_sign_in_with_autofill_pending,
    sign_out,
)

pytestmark = pytest.mark.browser

AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
# axe-core's tags for the WCAG 2.0, 2.1 and 2.2 success criteria at levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
VIEWPORTS = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 360, "height": 740},
}
PASSWORD = "correct horse battery staple"

# Every rendered element against its parent's box (absolutely placed ones against the
# viewport), and the page against the viewport. Elements clipped out of sight (the
# visually-hidden labels, and what they hold) are skipped. Half a pixel absorbs subpixel rounding.
OVERFLOW_JS = """
() => {
  const slack = 0.5;
  const viewport = document.documentElement.clientWidth;
  const name = (el) => {
    let text = el.tagName.toLowerCase();
    if (el.id) text += "#" + el.id;
    for (const c of el.classList) text += "." + c;
    return text;
  };
  const path = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body; e = e.parentElement) parts.unshift(name(e));
    return parts.join(" > ");
  };
  const clipped = (el) => {
    for (let e = el; e; e = e.parentElement) {
      if (getComputedStyle(e).clip === "rect(0px, 0px, 0px, 0px)") return true;
    }
    return false;
  };
  const span = (box) => `${box.left.toFixed(1)}..${box.right.toFixed(1)}`;
  const problems = [];
  for (const el of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (style.visibility === "hidden" || clipped(el)) continue;
    if (box.left < -slack || box.right > viewport + slack) {
      problems.push(`${path(el)}: ${span(box)} outside the viewport 0..${viewport}`);
      continue;
    }
    if (style.position === "absolute" || style.position === "fixed") continue;
    const parent = el.parentElement.getBoundingClientRect();
    if (box.left < parent.left - slack || box.right > parent.right + slack) {
      problems.push(`${path(el)}: ${span(box)} outside its parent ${span(parent)}`);
    }
  }
  if (document.documentElement.scrollWidth > viewport) {
    const width = document.documentElement.scrollWidth;
    problems.push(`the page scrolls sideways: ${width} > ${viewport}`);
  }
  return problems;
}
"""

HEADINGS_JS = """
() => [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")]
  .filter((h) => h.getClientRects().length)
  .map((h) => [h.tagName.toLowerCase(), parseFloat(getComputedStyle(h).fontSize),
               h.textContent.trim()])
"""

# Text links: links and buttons that read as links, but not links styled as buttons, the site's
# name, or a navigation's "you are here" entry.
LINKS_JS = """
() => [...document.querySelectorAll("a, .link-button")]
  .filter((el) => el.getClientRects().length && !el.matches(".button, .brand, [aria-current]"))
  .map((el) => {
    const style = getComputedStyle(el);
    return [el.textContent.trim(), style.color + " " + style.textDecorationLine];
  })
"""

FOCUSED_JS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  if (!el.dataset.tabbed) el.dataset.tabbed = String(Date.now() + Math.random());
  const style = getComputedStyle(el);
  const ring = [style.outlineStyle, style.outlineWidth, style.outlineColor, style.outlineOffset];
  return [el.dataset.tabbed, el.tagName.toLowerCase() + " " + (el.textContent.trim() || el.id),
          ring.join(" ")];
}
"""
MAX_TABS = 60

AXE_RUN_JS = """
async (tags) => {
  const results = await axe.run(document, {runOnly: {type: "tag", values: tags}});
  return results.violations.map((v) => ({
    id: v.id,
    help: v.help,
    nodes: v.nodes.map((n) => n.target.join(" ") + ": " + n.failureSummary.replace(/\\s+/g, " ")),
  }));
}
"""


class PageAudit:
    """Checks each page the walk stops at; collects what it finds."""

    def __init__(self, page: Page) -> None:
        if not AXE.exists():
            pytest.fail(f"{AXE.relative_to(REPO_ROOT)} is missing: run `make node-deps` (npm ci)")
        self.page = page
        self.axe_source = AXE.read_text()
        self.visited: list[str] = []
        self.problems: list[str] = []
        self.main_widths: dict[str, float] = {}
        # style -> the first link (or focused element) seen with it, and where
        self.link_styles: dict[str, str] = {}
        self.focus_rings: dict[str, str] = {}

    def check(self, label: str) -> None:
        page = self.page
        page.wait_for_load_state()
        self.visited.append(label)
        where = f"{label} ({urlsplit(page.url).path})"
        for problem in page.evaluate(OVERFLOW_JS):
            self.problems.append(f"{where}: overflow: {problem}")
        self.main_widths[label] = page.locator("main").bounding_box()["width"]  # type: ignore[index]
        self._check_headings(where)
        for text, style in page.evaluate(LINKS_JS):
            self.link_styles.setdefault(style, f"{where}: {text!r}")
        # The pages' Content Security Policy (script-src 'self') refuses a <script> that
        # Playwright's add_script_tag would insert. page.evaluate runs the source through the
        # DevTools protocol, which the policy does not govern, so the page is audited under its
        # real policy, in the same context and session as the walk (bypass_csp would need a
        # second context and a second sign-in).
        page.evaluate(self.axe_source)
        for violation in page.evaluate(AXE_RUN_JS, AXE_TAGS):
            for node in violation["nodes"]:
                self.problems.append(
                    f"{where}: axe {violation['id']} ({violation['help']}): {node}"
                )

        self._tab_through(where)

    def _check_headings(self, where: str) -> None:
        headings = self.page.evaluate(HEADINGS_JS)
        for higher, higher_size, higher_text in headings:
            for lower, lower_size, lower_text in headings:
                if higher < lower and higher_size <= lower_size:
                    self.problems.append(
                        f"{where}: {higher} {higher_text!r} ({higher_size}px) is not larger than "
                        f"{lower} {lower_text!r} ({lower_size}px)"
                    )

    def _tab_through(self, where: str) -> None:
        """Press Tab through the page; the focus ring of each element it reaches."""
        page = self.page
        page.evaluate("document.activeElement && document.activeElement.blur()")
        seen = set()
        for _ in range(MAX_TABS):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUSED_JS)
            if focused is None or focused[0] in seen:
                return
            seen.add(focused[0])
            self.focus_rings.setdefault(focused[2], f"{where}: {focused[1]}")
        self.problems.append(f"{where}: Tab reached more than {MAX_TABS} elements")

    def assert_clean(self) -> None:
        problems = list(self.problems)
        if len(self.link_styles) != 1:
            problems.append(f"links look different: {self.link_styles}")
        if len(self.focus_rings) != 1:
            problems.append(f"focus rings differ: {self.focus_rings}")
        assert not problems, "\n".join(problems)


def _walk_first_day(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite, audit: PageAudit
) -> None:
    person = invite()

    # The invite link, and a passkey.
    page.goto(person.link)
    expect(page.get_by_role("button", name="Create a passkey")).to_be_visible()
    audit.check("invite")
    page.get_by_role("button", name="Create a passkey").click()
    page.wait_for_url("/?enrolled=1")
    audit.check("home after enrolling")

    # Settings, from the account menu.
    open_account_menu(page)
    audit.check("account menu")
    page.locator("header").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Security Methods")).to_be_visible()
    audit.check("settings")

    # Removing the only passkey, past the step-up window (the enrollment verified the person),
    # asks to verify, then refuses, with a way to set up another.
    server.advance_clock(301)
    page.locator(".method").get_by_role("link", name="Remove").click()
    expect(page.get_by_role("button", name="Verify")).to_be_visible()
    audit.check("verify it's you")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("link", name="Set up another")).to_be_visible()
    audit.check("last-method guard")
    page.get_by_role("link", name="Set up another").click()
    expect(page.get_by_role("heading", name="Set up another passkey")).to_be_visible()
    audit.check("set up another")

    # A password and an authenticator app (verified a moment ago), and the recovery codes.
    page.goto("/settings")
    page.locator("#fallback").get_by_role("link", name="Set up").click()
    expect(page.locator("#totp-secret")).to_be_visible()
    audit.check("password set-up")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).at(server.now()))
    page.get_by_role("button", name="Set up").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
    audit.check("recovery codes")
    page.get_by_role("link", name="I saved them").click()
    expect(page.get_by_role("heading", name="Security Methods")).to_be_visible()
    audit.check("settings with the fallback")

    sign_out(page)
    audit.check("signed out")

    # Sign in with the password and a code: the "Set up a passkey" prompt.
    server.advance_clock(30)  # a fresh time step: the set-up used the current code
    page.goto("/sign-in/password")
    audit.check("password sign-in")
    page.get_by_label("Username or work email").fill(person.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_label("Code from your authenticator app")).to_be_visible()
    audit.check("code")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(server.now()))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Set up a passkey")).to_be_visible()
    audit.check("set up a passkey prompt")
    page.get_by_role("button", name="I\u2019ll do it later").click()
    expect(page.get_by_role("heading", name=f"Welcome, {person.name}")).to_be_visible()
    sign_out(page)

    # Sign in with the passkey: the first attempt fails (no user verification) and shows the
    # error notice with its next steps; "Try again" succeeds.
    authenticator.set_user_verified(False)
    open_sign_in_with_autofill_pending(page)
    audit.check("sign-in")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.locator("#ceremony-error")).to_be_visible()
    audit.check("sign-in error")
    authenticator.set_user_verified(True)
    page.get_by_role("button", name="Try again").click()
    page.wait_for_url("/")
    expect(page.get_by_role("heading", name=f"Welcome, {person.name}")).to_be_visible()
    audit.check("home")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_first_day_pages_fit_their_containers_and_pass_axe(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite, viewport: str
) -> None:
    page.set_viewport_size(VIEWPORTS[viewport])
    audit = PageAudit(page)

    _walk_first_day(page, authenticator, server, invite, audit)

    assert len(audit.visited) == 17, audit.visited
    audit.assert_clean()
    # Settings' long list gets the room a desktop has; a phone's width is all there is.
    if viewport == "desktop":
        assert audit.main_widths["settings"] > audit.main_widths["home"] * 1.25, audit.main_widths
    else:
        assert audit.main_widths["settings"] == audit.main_widths["home"], audit.main_widths


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_public_help_pages_fit_and_pass_axe(page: Page, viewport: str) -> None:
    """The help a new person or support staff open without signing in: /help, the set-up
    guides, and /help/errors, whose wide tables stack on a phone."""
    page.set_viewport_size(VIEWPORTS[viewport])
    audit = PageAudit(page)

    for path in ("/help", "/help/guide", "/help/guide/macos", "/help/errors#account_locked"):
        page.goto(path)
        audit.check(path)

    audit.assert_clean()
