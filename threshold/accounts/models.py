"""People who sign in to Threshold."""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from threshold.core.ceremony import new_user_handle
from threshold.core.errors import AccountDisabled, AccountError, AccountLocked


class Role(StrEnum):
    """What a person may do in the admin portal (``User.role``; the values are stored).

    Administrator: everything. Help desk: people and their sign-in methods, recovery
    links, locks and sessions; not the policy, apps or roles. Auditor: reads
    everything, changes nothing. Everyone else has no role and no portal.
    """

    ADMINISTRATOR = "admin"
    HELP_DESK = "helpdesk"
    AUDITOR = "auditor"
    NONE = ""

    @property
    def label(self) -> str:
        return _ROLE_LABELS[self]


_ROLE_LABELS = {
    Role.ADMINISTRATOR: "Administrator",
    Role.HELP_DESK: "Help desk",
    Role.AUDITOR: "Auditor",
    Role.NONE: "No role",
}


def normalize_username(username: str) -> str:
    """A username as it is stored and looked up: every spelling of one username is one person.

    Usernames are usually work email addresses, and an invite is mailed to the username
    (``enrollment.actions.do_invite``), so two spellings are one username exactly when they
    name one mailbox as Threshold's mail reaches it:

    - the whole of it in NFKC (Unicode compatibility composition): a letter typed precomposed
      or pasted decomposed (macOS: "a" then U+0308 for "ä"), and full-width letters and at
      sign (U+FF20) from an input method, are one spelling;
    - lower case (``str.lower``), as before; not ``casefold``, which writes "ß" as "ss" and a
      final sigma as a medial one, letters the name of a mailbox may hold: casefolded, its
      invite would go to another mailbox (a group's name, mailed nowhere, is casefolded);
    - the domain, after the last "@", through IDNA 2003 and back: Python's ``idna`` codec,
      with which Django's mail punycodes the domain it sends to (nameprep: case folding and
      NFKC). Stored in its Unicode form (U-labels), never the ASCII one (``xn--``): one form,
      as people read it, so that "Exämple.com", "exämple.com" in NFD and
      "xn--exmple-cua.com" are one domain, the one the invite is sent to. A domain IDNA
      refuses (an empty label or one over 63 characters, a broken ``xn--`` label) is kept in
      NFKC and lower case.

    Idempotent: a normalized username normalizes to itself (accounts 0007 relies on it)."""
    text = unicodedata.normalize("NFKC", username).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        return _folded(text)
    return f"{_folded(local)}@{_domain_of_username(domain)}"


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text.lower())


def _domain_of_username(domain: str) -> str:
    folded = _folded(domain)
    try:
        return _folded(folded.encode("idna").decode("idna"))
    except UnicodeError:
        return folded


def search_key(text: str) -> str:
    """``text`` as the people search compares it (``User.name_key``): Unicode's case folding
    and compatibility decomposition without the combining marks, so that "östlund", "ÖSTLUND"
    and "Ostlund" all find "Åsa Östlund", and "strasse" "Straße". The same on every database:
    SQLite's LIKE folds only ASCII letters (accounts 0006 fills it for people added before)."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


class UserManager(BaseUserManager["User"]):
    def create_user(
        self, username: str, *, email: str = "", full_name: str = "", is_administrator: bool = False
    ) -> User:
        user = self.model(
            username=normalize_username(username),
            email=email.strip(),
            full_name=full_name.strip(),
            role=Role.ADMINISTRATOR if is_administrator else Role.NONE,
        )
        # Passwordless: there is no password to guess, leak or reuse.
        user.set_unusable_password()
        user.save(using=self._db)
        return user


class User(AbstractBaseUser):
    username = models.CharField(max_length=150, unique=True)
    email = models.EmailField(blank=True)
    full_name = models.CharField(max_length=200, blank=True)
    # search_key(full_name), set by save(): what the people search matches a name in. A text
    # column: the decomposition may lengthen a name many times. Blank in the database when a
    # row is inserted without it (by SQL, not save()).
    name_key = models.TextField(blank=True, editable=False, db_default="")
    # WebAuthn user.id: random and opaque, never an email address (§14.6.1).
    user_handle = models.BinaryField(max_length=64, unique=True, default=new_user_handle)
    is_active = models.BooleanField(default=True)
    # Role's values; blank: none (no admin portal). No choices=: a new role needs no migration.
    role = models.CharField(max_length=16, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    # An administrator's explicit lock (``threshold users lock``): no way of
    # signing in works while it is set. Not the fallback path's throttle of
    # wrong passwords, which never blocks passkeys.
    locked_at = models.DateTimeField(null=True, blank=True)
    locked_reason = models.CharField(max_length=200, blank=True)
    # When the person first used a one-time link that was emailed to ``email``: proof that
    # they read that mailbox (the ID token's ``email_verified``). None: not proven, as when
    # the administrator handed the link over some other way.
    email_verified_at = models.DateTimeField(null=True, blank=True)

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"

    objects = UserManager()

    def __str__(self) -> str:
        return self.username

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.name_key = search_key(self.full_name)
        fields = kwargs.get("update_fields")
        if fields is not None and "full_name" in fields:
            kwargs["update_fields"] = {*fields, "name_key"}
        super().save(*args, **kwargs)

    @property
    def display_name(self) -> str:
        return self.full_name or self.username

    @property
    def address_for_apps(self) -> str:
        """The address apps are told (the ID token's ``email``): ``email``, else the username
        when that is one; "" when it is no address (apps are given no email claims at all)."""
        address = self.email or self.username
        try:
            validate_email(address)
        except ValidationError:
            return ""
        return address

    @property
    def has_verified_email(self) -> bool:
        """Apps are told that address is verified (``email_verified``): the person used a link
        emailed to ``email`` (``email_verified_at``). An address that is only the username (no
        ``email``) never is: no link is emailed there."""
        return bool(self.email and self.address_for_apps) and self.email_verified_at is not None

    @property
    def is_administrator(self) -> bool:
        return self.role == Role.ADMINISTRATOR

    @property
    def portal_role(self) -> Role:
        """The person's role; an unknown stored value (a newer version's) is none."""
        try:
            return Role(self.role)
        except ValueError:
            return Role.NONE

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None

    @property
    def can_sign_in(self) -> bool:
        """Neither deactivated nor locked: the one test every way of signing in applies."""
        return self.sign_in_refusal() is None

    def sign_in_refusal(self, detail: str = "") -> AccountError | None:
        """Why this person may not sign in (AccountDisabled, AccountLocked), or None."""
        if not self.is_active:
            return AccountDisabled(detail)
        if self.locked_at is not None:
            return AccountLocked(detail)
        return None
