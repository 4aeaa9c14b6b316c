"""The authenticators page: every authenticator registered here, and a picker over FIDO
metadata and the known passkey providers to build the AAGUID allow- and deny-lists by name."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Count

from threshold.core.authenticators import KNOWN_PROVIDERS
from threshold.core.metadata import default_icons, default_store
from threshold.passkeys.models import Passkey

RESULTS_MAX = 25
SEARCH_MAX_LENGTH = 100


@dataclass(frozen=True)
class Authenticator:
    aaguid: str
    name: str
    icon: str = ""
    source: str = ""  # "FIDO metadata" or "Passkey provider"


def _catalogue() -> dict[str, Authenticator]:
    """Every authenticator with a name, by AAGUID: metadata first, then the providers it lacks."""
    icons = default_icons()
    found = {
        aaguid: Authenticator(aaguid, entry.description, icons.get(aaguid, ""), "FIDO metadata")
        for aaguid, entry in default_store().by_aaguid.items()
    }
    for aaguid, name in KNOWN_PROVIDERS.items():
        found.setdefault(aaguid, Authenticator(aaguid, name, "", "Passkey provider"))
    return found


def _registered_names() -> dict[str, str]:
    """The names passkeys registered here were given, by AAGUID (one query, grouped)."""
    return {
        str(aaguid): name
        for aaguid, name in Passkey.objects.order_by()
        .exclude(authenticator_name="")
        .values_list("aaguid", "authenticator_name")
        .distinct()
    }


def name_of(aaguid: str) -> str:
    known = _catalogue().get(aaguid)
    return known.name if known else "Unknown authenticator"


def search(text: str) -> list[Authenticator]:
    """Authenticators whose name contains ``text`` (or whose AAGUID is ``text``), by name."""
    text = text.strip().lower()[:SEARCH_MAX_LENGTH]
    if not text:
        return []
    catalogue = _catalogue()
    # Authenticators registered here that no catalogue names, under the name they were given.
    for aaguid, name in _registered_names().items():
        catalogue.setdefault(aaguid, Authenticator(aaguid, name, "", "Registered here"))
    matches = [
        item for item in catalogue.values() if text in item.name.lower() or item.aaguid == text
    ]
    return sorted(matches, key=lambda item: (item.name.lower(), item.aaguid))[:RESULTS_MAX]


def canonical_aaguid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        return None


@dataclass(frozen=True)
class Registered:
    aaguid: str
    name: str
    passkeys: int
    people: int


def registered() -> list[Registered]:
    """Every AAGUID registered here, most passkeys first, with its passkeys and people."""
    rows = (
        Passkey.objects.order_by()
        .values("aaguid")
        .annotate(n=Count("pk"), people=Count("user", distinct=True))
        .order_by("-n", "aaguid")
    )
    names = _registered_names()
    return [
        Registered(
            str(row["aaguid"]),
            names.get(str(row["aaguid"])) or name_of(str(row["aaguid"])),
            row["n"],
            row["people"],
        )
        for row in rows
    ]
