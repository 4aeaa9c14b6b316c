"""Passkeys (WebAuthn credentials) and the ceremonies in progress."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from threshold.core.attestation import anchor_proves_aaguid
from threshold.core.authenticators import looks_like_security_key
from threshold.core.names import NICKNAME_MAX_LENGTH
from threshold.core.policy import PasskeyFacts
from threshold.core.useragent import describe
from threshold.core.vocabulary import Attachment, Transport

# A default name keeps at least this much of the authenticator's name beside the browser's.
_AUTHENTICATOR_MIN_ROOM = 10


class Passkey(models.Model):
    """One registered credential, every field a column (§7.1 step 27)."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="passkeys")
    # Unique across all accounts (§7.1 step 26); the index serves every sign-in.
    credential_id = models.BinaryField(max_length=1023, unique=True)
    public_key = models.BinaryField()  # the COSE_Key as registered
    alg = models.IntegerField()
    sign_count = models.BigIntegerField(default=0)
    aaguid = models.UUIDField()
    transports = models.JSONField(default=list)
    backup_eligible = models.BooleanField()
    backup_state = models.BooleanField()
    uv_initialized = models.BooleanField()
    attestation_format = models.CharField(max_length=32)
    attestation_type = models.CharField(max_length=16)
    # §7.1 step 24: did the attestation chain reach a trust anchor, and which?
    attestation_trusted = models.BooleanField(default=False)
    trust_anchor = models.CharField(max_length=200, blank=True)
    # The authenticator as people know it: "YubiKey 5 Series with NFC", "iCloud Keychain".
    authenticator_name = models.CharField(max_length=200, blank=True)
    # "platform", "cross-platform", or "" when neither the client nor the transports said.
    authenticator_attachment = models.CharField(max_length=16, blank=True)
    is_security_key = models.BooleanField(default=False)
    is_discoverable = models.BooleanField(null=True)
    # Chosen by the person; blank shows the default name (see ``name``).
    nickname = models.CharField(max_length=NICKNAME_MAX_LENGTH, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The browsers that created and last used it, as sent (described when shown,
    # so the sign-in path stores a string and parses nothing).
    created_user_agent = models.CharField(max_length=512, blank=True)
    last_used_at = models.DateTimeField(null=True)
    last_used_user_agent = models.CharField(max_length=512, blank=True)
    # Set when the signature counter went backwards (§7.2 step 22).
    is_possibly_cloned = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def default_name(self) -> str:
        """The authenticator and where it was created: "iCloud Keychain (Safari on macOS)".

        Clipped to a nickname's length, so that saving it unchanged works.
        """
        authenticator = self.authenticator_name or "Passkey"
        suffix = f" ({describe(self.created_user_agent).label})" if self.created_user_agent else ""
        if len(authenticator) + len(suffix) <= NICKNAME_MAX_LENGTH:
            return authenticator + suffix
        room = NICKNAME_MAX_LENGTH - len(suffix) - 1
        if room < _AUTHENTICATOR_MIN_ROOM:  # an absurd browser name: keep the authenticator's
            return authenticator[: NICKNAME_MAX_LENGTH - 1].rstrip() + "\u2026"
        return authenticator[:room].rstrip() + "\u2026" + suffix

    @property
    def name(self) -> str:
        return self.nickname or self.default_name

    @property
    def is_synced(self) -> bool:
        """Synced (backup eligible: iCloud Keychain, Google Password Manager) vs device-bound."""
        return self.backup_eligible

    @property
    def looks_like_security_key(self) -> bool:
        """``is_security_key`` needs attestation to prove it (policy relies on it);
        this is what the person sees, and what they plugged in says enough."""
        return self.is_security_key or looks_like_security_key(
            self.authenticator_attachment, self.backup_eligible, self.transports
        )

    @property
    def kind(self) -> str:
        """The three kinds of passkey people are told about (the help pages' platform,
        cross-platform and security key, as they describe them: built in, "uses your phone").

        The attachment first: a passkey made with the device's own Touch ID or Windows Hello
        is "platform" even when its transports include "hybrid" (iCloud Keychain and Google
        Password Manager list both, as they can also serve a phone's QR-code sign-in); one
        made through a phone's QR code is "cross-platform". A client that sent no attachment
        has one inferred from the transports at registration (``attachment_of``: "internal"
        says platform), so such a passkey listing both reads as built in, as a Mac's does;
        only "hybrid" without "internal" then says phone."""
        if self.looks_like_security_key:
            return "Security key"
        if self.authenticator_attachment == Attachment.PLATFORM:
            return "Built-in authenticator"
        if Transport.HYBRID in self.transports:
            return "Phone or tablet"
        return "Passkey"

    @property
    def storage(self) -> str:
        if self.backup_eligible:
            return "Synced across your devices"
        return "Only on this key" if self.looks_like_security_key else "Only on this device"

    @property
    def policy_facts(self) -> PasskeyFacts:
        """What the organisation policy looks at, as the registration recorded it."""
        return PasskeyFacts(
            aaguid=str(self.aaguid),
            aaguid_attested=self.attestation_trusted
            and anchor_proves_aaguid(self.trust_anchor, self.attestation_format),
            attestation_trusted=self.attestation_trusted,
            untrusted_reason="" if self.attestation_trusted else "not trusted at registration",
            backup_eligible=self.backup_eligible,
            attestation_format=self.attestation_format,
            alg=self.alg,
        )

    @property
    def created_from(self) -> str:
        return describe(self.created_user_agent).label if self.created_user_agent else ""

    @property
    def last_used_from(self) -> str:
        return describe(self.last_used_user_agent).label if self.last_used_user_agent else ""


class UsedChallenge(models.Model):
    """A challenge whose ceremony has finished, kept until its token expires.

    The browser keeps a ceremony's state in a signed token (``threshold.passkeys.pending``);
    this table is what makes the token work once: finishing inserts the challenge's
    hash, and the primary key refuses it a second time.
    """

    challenge_hash = models.CharField(max_length=64, primary_key=True)  # SHA-256, hex
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"Used challenge {self.challenge_hash[:12]}, kept until {self.expires_at}"
