"""Usernames in one spelling (``accounts.models.normalize_username``): NFKC, lower case, the
domain through IDNA 2003 and back to its Unicode form; and accounts 0007, which rewrites the
usernames stored before in it, but those it would make one with another person's."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.mail.message import sanitize_address
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.integration.portal_support import staff
from threshold.accounts.access import get_user
from threshold.accounts.models import Role, User, normalize_username

NFC = unicodedata.normalize("NFC", "ada@exämple.com")
NFD = unicodedata.normalize("NFD", "ada@exämple.com")

SPELLINGS = [
    # Typed, pasted from a Mac (decomposed), in capitals, around spaces.
    (unicodedata.normalize("NFC", "Ada@Exämple.com"), NFC),
    (NFD, NFC),
    (" ADA@EXÄMPLE.COM\t", NFC),
    # The domain's ASCII form (IDNA's A-label), in any case: stored in its Unicode form.
    ("ada@xn--exmple-cua.com", NFC),
    ("Ada@XN--EXMPLE-CUA.COM", NFC),
    # Full-width letters, at sign and full stop, from an input method.
    ("ａｄａ＠ｅｘäｍｐｌｅ．ｃｏｍ", NFC),  # noqa: RUF001 - the point
    # Not an address: the same, without a domain.
    ("JDoe", "jdoe"),
    ("ｊｄｏｅ", "jdoe"),  # noqa: RUF001 - the point
    # Lower case, not case folding: a mailbox's ß is its own (strasse@ may be someone else's).
    ("Straße@example.com", "straße@example.com"),
    # The domain as Django's mail sends to it (IDNA 2003 maps ß to ss there).
    ("jo@Straße.de", "jo@strasse.de"),
    # The last "@" starts the domain; a domain IDNA refuses stays as typed, in lower case.
    ('"A@B"@Example.com', '"a@b"@example.com'),
    ("ada@Example..com", "ada@example..com"),
    ("ada@XN--ZZ.com", "ada@xn--zz.com"),
    ("ada@", "ada@"),
]


@pytest.mark.parametrize(("typed", "stored"), SPELLINGS)
def test_each_spelling_of_a_username_is_stored_in_one(typed: str, stored: str) -> None:
    assert normalize_username(typed) == stored
    assert normalize_username(stored) == stored


@pytest.mark.parametrize(
    "typed", [typed for typed, stored in SPELLINGS if stored == NFC and "@" in typed]
)
def test_the_stored_spelling_is_mailed_where_the_typed_one_would_be(typed: str) -> None:
    """Invites go to the username: Django punycodes the domain (Python's idna codec), so the
    stored spelling reaches the mailbox the typed one names (one typed with a full-width at
    sign names none: Django finds no address in it)."""
    typed_address = sanitize_address(typed.strip(), "utf-8")
    assert sanitize_address(normalize_username(typed), "utf-8") == typed_address.lower()
    assert typed_address.lower() == "ada@xn--exmple-cua.com"


def test_a_normalized_username_normalizes_to_itself_whatever_it_holds() -> None:
    """Idempotent (accounts 0007 relies on it: a username already stored in a spelling is
    one no other username is rewritten to): each character that NFKC or a change of case
    changes, in the local part and in the domain."""
    changed = [
        chr(code)
        for code in range(0x10000)
        if not 0xD800 <= code <= 0xDFFF
        and (unicodedata.normalize("NFKC", chr(code)), chr(code).lower()) != (chr(code),) * 2
    ]
    assert len(changed) > 4000
    for char in changed:
        for username in (f"a{char}b@x{char}y.com", char):
            once = normalize_username(username)
            assert normalize_username(once) == once, (ascii(username), ascii(once))


@pytest.mark.django_db
def test_every_spelling_finds_the_one_person() -> None:
    ada = User.objects.create_user(NFD)
    assert ada.username == NFC
    for typed, stored in SPELLINGS:
        if stored == NFC:
            assert get_user(typed) == ada, ascii(typed)


@pytest.mark.django_db
def test_the_people_search_finds_a_username_typed_in_another_spelling() -> None:
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    User.objects.create_user(NFC, full_name="Countess of Lovelace")  # no "ada" in the name
    for typed in (unicodedata.normalize("NFD", "ada@exä"), "ADA@EXÄ", "ａｄａ"):  # noqa: RUF001
        page = browser.get("/admin/people", data={"q": typed}).content.decode()
        assert "exämple.com" in page, ascii(typed)


# --- accounts 0007 ----------------------------------------------------------------------------

BEFORE = [("accounts", "0006_user_name_key")]
AFTER = [("accounts", "0007_username_normalization")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    MigrationExecutor(connection).migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def restore_schema() -> Iterator[None]:
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("restore_schema")
def test_the_migration_respells_usernames_but_those_it_would_make_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    apps = migrate(BEFORE)
    OldUser = apps.get_model("accounts", "User")
    stored = {
        "grace@example.com": "grace@example.com",  # spelled so already
        NFD: NFC,  # alone: rewritten
        "bob@xn--bcher-kva.example": "bob@bücher.example",
        "ｊｏ＠ｅｘａｍｐｌｅ．ｃｏｍ": "jo@example.com",  # noqa: RUF001
        # One person already in the new spelling, and another in an old one: both left.
        "eve@exämple.com": "eve@exämple.com",
        unicodedata.normalize("NFD", "eve@exämple.com"): None,
        # Two in old spellings of one new one: both left.
        "ｍａｌ@example.com": None,  # noqa: RUF001
        "ｍａｌ＠example.com": None,  # noqa: RUF001
    }
    for n, username in enumerate(stored):
        OldUser.objects.create(username=username, user_handle=bytes([n]) * 32)

    capsys.readouterr()
    migrate(AFTER)
    report = capsys.readouterr().out

    found = set(User.objects.values_list("username", flat=True))
    expected = {after or before for before, after in stored.items()}
    assert found == expected
    assert "2 username(s) left as they were" in report
    assert "'eve@ex\\xe4mple.com': 'eve@ex\\xe4mple.com', 'eve@exa\\u0308mple.com'" in report
    assert "'mal@example.com': " in report
