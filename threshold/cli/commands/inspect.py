"""``threshold inspect registration|authentication RESPONSE.json ...``: explain a ceremony.

Plain core: it runs without settings or a database, so support staff can use it anywhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from threshold.cli.commands import Command, Subcommands

# base64url values start with "-" once in 64: argparse would read such a value
# as an option, so ``--challenge -AbC`` is joined into ``--challenge=-AbC``.
INSPECT_BASE64URL_OPTIONS = ("--challenge", "--public-key")
# A credential.toJSON() is a few kilobytes and a PEM file a few certificates.
INSPECT_MAX_FILE_BYTES = 1024 * 1024


class _CeremonyParser(argparse.ArgumentParser):
    """A parser that reads ``--challenge -AbC`` as the option and its value."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        joined = None if args is None else _join_base64url_values(list(args))
        return super().parse_known_args(joined, namespace)


def register(commands: Subcommands) -> list[Command]:
    inspect = commands.add_parser(
        "inspect",
        help="verify a credential.toJSON() as the server would, and explain the verdict",
        description="Prints one JSON object. Exit status: 0 accept, 1 reject, 2 usage error.",
    )
    kinds = inspect.add_subparsers(dest="kind", required=True, parser_class=_CeremonyParser)
    ceremonies: list[Command] = []
    for kind in ("registration", "authentication"):
        parser = kinds.add_parser(kind)
        parser.add_argument("response", metavar="RESPONSE.json", help="at most 1 MiB")
        parser.add_argument("--rp-id", required=True)
        parser.add_argument(
            "--origin",
            action="append",
            required=True,
            dest="origins",
            help="https://host on the RP ID, or an Android app's android:apk-key-hash:...",
        )
        parser.add_argument(
            "--related-origin",
            action="append",
            default=[],
            dest="related_origins",
            help="a web origin the RP ID's /.well-known/webauthn lists",
        )
        parser.add_argument(
            "--challenge",
            required=True,
            help="base64url, as sent in the options (one starting with - works too, "
            "or write --challenge=-AbC...)",
        )
        parser.add_argument("--require-user-verification", action="store_true")
        parser.add_argument("--allow-cross-origin", action="store_true")
        parser.add_argument("--top-origin", action="append", default=[], dest="top_origins")
        parser.add_argument("--at", help="ISO 8601 instant for certificate validity")
        parser.add_argument(
            "--alg",
            type=int,
            action="append",
            dest="algorithms",
            metavar="COSE_ALG",
            help="an algorithm the server allows (repeat for more; default: all supported)",
        )
        if kind == "registration":
            parser.add_argument(
                "--trust-anchor",
                action="append",
                default=[],
                metavar="FILE.pem",
                help="at most 1 MiB",
            )
            parser.add_argument("--require-trusted-attestation", action="store_true")
        else:
            parser.add_argument("--public-key", required=True, help="COSE_Key, base64url")
            parser.add_argument("--sign-count", type=int, required=True)
            parser.add_argument("--backup-eligible", action="store_true")
        ceremonies.append(Command(parser, inspect_ceremony, needs_django=False))
    return ceremonies


def _join_base64url_values(argv: list[str]) -> list[str]:
    """``inspect`` arguments with ``--challenge VALUE`` written ``--challenge=VALUE``."""
    joined: list[str] = []
    values = iter(argv)
    for arg in values:
        if arg == "--":
            joined.append(arg)
            joined.extend(values)
            break
        if arg in INSPECT_BASE64URL_OPTIONS:
            value = next(values, None)
            joined.append(arg if value is None else f"{arg}={value}")
        else:
            joined.append(arg)
    return joined


def _read_file(path: str) -> bytes:
    """The file's bytes, reading at most one byte past the limit (``/dev/zero`` is endless)."""
    with open(path, "rb") as handle:
        data = handle.read(INSPECT_MAX_FILE_BYTES + 1)
    if len(data) > INSPECT_MAX_FILE_BYTES:
        raise ValueError("larger than 1 MiB")
    return data


def inspect_ceremony(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from cryptography import x509

    from threshold.core import ceremony, inspection
    from threshold.core.encoding import b64url_decode

    def usage(message: str) -> int:
        print(f"threshold inspect: {message}", file=sys.stderr)
        return 2

    try:
        challenge = b64url_decode(args.challenge.strip())
    except ValueError:
        return usage("--challenge must be base64url")
    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            return usage("--at must be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z")
        if at.tzinfo is None:
            return usage("--at needs a time zone, e.g. 2026-01-31T12:00:00Z")
        try:
            # Certificates are checked in UTC: 0001-01-01T00:00:00+14:00 is before year 1.
            at.astimezone(UTC).timestamp()
        except (OverflowError, ValueError, OSError):
            return usage("--at is out of range: it must fall between the years 1 and 9999 in UTC")
    for origin in args.origins:
        problem = ceremony.origin_problem(args.rp_id, origin)
        if problem:
            return usage(problem)
    for origin in args.related_origins:
        problem = ceremony.related_origin_problem(origin)
        if problem:
            return usage(problem)
    anchors: list[x509.Certificate] = []
    for path in getattr(args, "trust_anchor", []):
        try:
            anchors.extend(x509.load_pem_x509_certificates(_read_file(path)))
        except (OSError, ValueError) as exc:
            return usage(f"trust anchor {path}: {exc}")
    try:
        raw = _read_file(args.response)
    except OSError as exc:
        return usage(f"{args.response}: {exc.strerror}")
    except ValueError as exc:
        return usage(f"{args.response}: {exc}")
    try:
        document: object = json.loads(raw)
    except (ValueError, RecursionError):
        document = None  # a malformed credential: rejected with a reason below
    params = inspection.Ceremony(
        rp_id=args.rp_id,
        origins=args.origins,
        challenge=challenge,
        require_user_verification=args.require_user_verification,
        allow_cross_origin=args.allow_cross_origin,
        top_origins=args.top_origins,
        related_origins=args.related_origins,
        at=at,
        algorithms=tuple(args.algorithms or ceremony.SUPPORTED_ALGORITHMS),
        **(
            {
                "trust_anchors": anchors,
                "require_trusted_attestation": args.require_trusted_attestation,
            }
            if args.kind == "registration"
            else {}
        ),
    )
    if args.kind == "registration":
        report = inspection.inspect_registration(document, params)
    else:
        try:
            public_key = b64url_decode(args.public_key.strip())
            ceremony.public_key_algorithm(public_key)
        except ValueError:
            return usage("--public-key must be a base64url COSE_Key")
        report = inspection.inspect_authentication(
            document,
            params,
            public_key=public_key,
            sign_count=args.sign_count,
            backup_eligible=args.backup_eligible,
        )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["verdict"] == "accept" else 1
