"""The help page for support staff (/help/errors) and the problem page's link to it."""

from __future__ import annotations

import html
import re
import shlex
from pathlib import Path

import pytest

import threshold
from tests.integration.conftest import Browser
from threshold.cli.main import main
from threshold.core.catalog import CATALOG, GROUPS

pytestmark = pytest.mark.django_db


def text_of(response) -> str:
    return html.unescape(response.content.decode())


def as_page(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def row(page: str, key: str) -> str:
    match = re.search(rf'<tr id="{key}">(.*?)</tr>', page, re.DOTALL)
    assert match, f"no row for {key}"
    return match.group(1)


def test_the_help_page_is_public_and_lists_every_entry_in_its_section():
    response = Browser().get("/help/errors")
    assert response.status_code == 200
    page = text_of(response)
    captions = re.findall(r"<caption>(.*?)</caption>", page)
    assert captions == list(GROUPS.values())
    for entry in CATALOG.values():
        cells = row(page, entry.key)
        assert entry.title in cells
        assert entry.message in cells
        # The commands in backticks are code on the page (web/templatetags/catalog_text.py).
        assert as_page(entry.cause) in cells
        assert as_page(entry.solution) in cells
        assert "`" not in cells
        assert f"<code>{entry.key}</code>" in cells
    # The table the row is in is its group's.
    for table in re.findall(r"<table.*?</table>", page, re.DOTALL):
        caption = re.search(r"<caption>(.*?)</caption>", table).group(1)
        group = next(key for key, heading in GROUPS.items() if heading == caption)
        for key in re.findall(r'<tr id="([a-z_]+)">', table):
            assert CATALOG[key].group == group, key


def test_the_help_page_tables_are_accessible():
    page = text_of(Browser().get("/help/errors"))
    tables = re.findall(r"<table.*?</table>", page, re.DOTALL)
    assert len(tables) == len(GROUPS)
    for table in tables:
        assert table.count('<th scope="col">') == 3
        assert table.count('<th scope="row">') == table.count("<tr id=")


def test_the_help_page_says_which_messages_the_browser_shows():
    page = text_of(Browser().get("/help/errors"))
    assert "Shown by the browser or device" in row(page, "browser_no_passkeys")
    assert "Shown by the browser or device" not in row(page, "session_expired")
    assert "Start again from the beginning" in row(page, "session_expired")


def test_the_problem_page_links_to_its_row_of_the_help_page():
    response = Browser().get("/no-such-page")
    assert response.status_code == 404
    page = text_of(response)
    link = re.search(r'<a href="([^"]+)">Help with this error</a>', page)
    assert link
    assert link.group(1) == "/help/errors#not_found"
    assert row(text_of(Browser().get("/help/errors")), "not_found")


# --- The commands the help text names ------------------------------------------------------------

TEMPLATES = sorted(Path(threshold.__file__).parent.glob("*/templates/**/*.*"))
# Placeholders the help text may use in a command, and what stands in for them when it runs.
PLACEHOLDERS = {"EMAIL": "ada@example.com", "NAME=VALUE": "passkey_limit=10"}


def named_commands() -> list[str]:
    """Every `threshold ...` command in the catalog's texts and in the templates."""
    texts = [
        text for entry in CATALOG.values() for text in (entry.message, entry.cause, entry.solution)
    ]
    texts += [path.read_text() for path in TEMPLATES]
    found: set[str] = set()
    for text in texts:
        found.update(re.findall(r"`(threshold [^`]+)`", text))
        found.update(html.unescape(c) for c in re.findall(r"<code>(threshold [^<]+)</code>", text))
    return sorted(found)


def test_the_help_text_names_commands():
    # The test below must have something to run.
    assert {"threshold audit", "threshold policy show"} <= set(named_commands())


@pytest.mark.parametrize("command", named_commands())
def test_every_command_the_help_text_names_runs(command, ada, capsys):
    argv = [PLACEHOLDERS.get(word, word) for word in shlex.split(command)[1:]]
    unknown = [word for word in argv if re.fullmatch(r"[A-Z][A-Z_=]*", word)]
    assert not unknown, f"add a stand-in for {unknown} to PLACEHOLDERS"
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    captured = capsys.readouterr()
    assert status != 2, f"`{command}` is a usage error:\n{captured.err}"
    assert "usage:" not in captured.out + captured.err


def test_the_limits_next_step_is_worded_as_the_pages_and_seeds_word_it():
    """ "Set it up later", as the set-up pages' link and the help articles say it: for the device
    app's limit too, where there is no passkey to set up."""
    page = text_of(Browser().get("/help/errors"))
    for key in ("limit_reached", "device_limit_reached", "setup_canceled"):
        cells = row(page, key)
        assert "Set it up later" in cells, key
        assert "passkey up later" not in cells, key
