"""What every page shares (web/base.html, page.js): "Skip to main content" first in the tab
order, and the account menu that Escape and a click outside it close."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Authenticator, Invite, enroll, open_account_menu

pytestmark = pytest.mark.browser


def width(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return float(box["width"])


def test_skip_to_main_content_is_the_first_stop_and_shows_while_it_has_the_focus(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    enroll(page, invite())
    for path in ("/", "/settings", "/help/guide"):
        page.goto(path)
        skip = page.get_by_role("link", name="Skip to main content")
        assert width(skip) <= 1, path  # visually hidden until it has the focus
        page.keyboard.press("Tab")
        expect(skip).to_be_focused()
        assert width(skip) > 1, path
        page.keyboard.press("Enter")
        assert page.evaluate("location.hash") == "#main"
        # The next stop is in the main content, past the header's brand and menu.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('main') !== null"), path


def test_the_account_menu_closes_on_escape_and_outside_it(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    enroll(page, invite())
    menu = page.locator("header details.account-menu")
    summary = menu.locator("summary")
    open_account_menu(page)
    expect(menu).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(menu).not_to_have_attribute("open", "")
    expect(summary).to_be_focused()
    open_account_menu(page)
    page.locator("main h1").click()
    expect(menu).not_to_have_attribute("open", "")
    # From the keyboard: open it, move into it, and Escape closes it from there too.
    summary.focus()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("open", "")
    page.keyboard.press("Tab")
    expect(menu.get_by_role("link", name="Settings")).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).not_to_have_attribute("open", "")
    expect(summary).to_be_focused()
