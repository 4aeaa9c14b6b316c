"""The FIDO Alliance conformance API ("Server Requirements and Transport Binding Profile").

Off unless THRESHOLD_FIDO_CONFORMANCE=1: any username may register, which only
a test server should allow (``threshold.config`` refuses it outside localhost
unless the operator insists, and warns whenever it is on). The endpoints run the
same actions and core as the pages; only the JSON shapes differ. Usernames and
display names follow the rules of names people give themselves in Settings
(``core/names.py``): they are printed by ``threshold users`` and shown on pages.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from threshold.accounts.actions import do_get_or_create_user
from threshold.core import errors
from threshold.core.catalog import Surface
from threshold.core.names import DISPLAY_NAME_MAX_LENGTH, clean_name
from threshold.core.policy import Policy
from threshold.core.vocabulary import (
    Attachment,
    AttestationConveyance,
    ResidentKey,
    UserVerification,
)
from threshold.passkeys.actions import (
    do_begin_registration,
    do_begin_sign_in,
    do_finish_registration,
    do_finish_sign_in,
)
from threshold.passkeys.http import ceremonies, read_credential
from threshold.passkeys.pending import Purpose
from threshold.policy.access import policy_for
from threshold.web.http import (
    audit_origin,
    failed,
    ok,
    optional_string,
    read_json_object,
)

CONFORMANCE = Purpose.CONFORMANCE
_UV = tuple(UserVerification)
_ATTESTATION = tuple(AttestationConveyance)
USERNAME_MAX_LENGTH = 150  # accounts.User.username


def _choice(data: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise errors.MalformedRequest(f"{name} must be one of {', '.join(allowed)}")
    return value


def _username(data: dict[str, Any]) -> str:
    username = optional_string(data, "username")
    if not username or not username.strip():
        raise errors.MalformedRequest("username is required")
    return clean_name(username, USERNAME_MAX_LENGTH)


# Deeper than any WebAuthn extension's input (prf's evalByCredential is 3 levels): the
# options echo the extensions, and an answer nested near the reader's limit cannot be written.
_EXTENSIONS_MAX_DEPTH = 8


def _extensions(data: dict[str, Any]) -> dict[str, Any] | None:
    extensions = data.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise errors.MalformedRequest("extensions must be an object")
    if extensions is not None and _depth(extensions) > _EXTENSIONS_MAX_DEPTH:
        raise errors.MalformedRequest(f"extensions nest deeper than {_EXTENSIONS_MAX_DEPTH}")
    return extensions


def _depth(value: Any) -> int:
    """How deep ``value`` (decoded JSON) nests objects and arrays, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


@csrf_exempt
@require_POST
def attestation_options(request: HttpRequest) -> JsonResponse:
    try:
        data = read_json_object(request)
        username = _username(data)
        display_name = data.get("displayName")
        if display_name in (None, ""):
            display_name = ""
        else:
            display_name = clean_name(display_name, DISPLAY_NAME_MAX_LENGTH)
        selection = data.get("authenticatorSelection") or {}
        if not isinstance(selection, dict):
            raise errors.MalformedRequest("authenticatorSelection must be an object")
        resident_key = selection.get("residentKey")
        if resident_key is None:
            resident_key = (
                ResidentKey.REQUIRED
                if selection.get("requireResidentKey") is True
                else ResidentKey.PREFERRED
            )
        resident_key = _choice(
            {"rk": resident_key}, "rk", tuple(ResidentKey), ResidentKey.PREFERRED
        )
        attachment = selection.get("authenticatorAttachment")
        if attachment is not None and attachment not in tuple(Attachment):
            raise errors.MalformedRequest(
                "authenticatorAttachment must be platform or cross-platform"
            )
        user_verification = _choice(selection, "userVerification", _UV, UserVerification.PREFERRED)
        attestation = _choice(data, "attestation", _ATTESTATION, AttestationConveyance.NONE)
        extensions = _extensions(data)
        # Only a request that is valid throughout creates the account.
        user, _ = do_get_or_create_user(username, audit_origin(request), full_name=display_name)
        options = do_begin_registration(
            ceremonies(request),
            user,
            purpose=CONFORMANCE,
            # Test tools register many credentials for one username.
            policy=replace(policy_for(request), passkey_limit=100),
            user_verification=user_verification,
            resident_key=resident_key,
            attestation=attestation,
            authenticator_attachment=attachment,
            extensions=extensions,
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.REGISTRATION)
    return ok(options)


# Conformance tools exercise every authenticator kind, U2F included: the
# organisation's rules on passkeys apply to the test API neither at
# registration nor at sign-in (user verification: what each ceremony's options asked).
_RULES = Policy(refuse_u2f_authenticators=False, user_verification=UserVerification.PREFERRED)


@csrf_exempt
@require_POST
def attestation_result(request: HttpRequest) -> JsonResponse:
    try:
        do_finish_registration(
            ceremonies(request),
            read_credential(request),
            audit_origin(request),
            purpose=CONFORMANCE,
            policy=_RULES,
            # The tools' negative cases: an expired or untrusted chain fails (§7.1 step 27).
            refuse_failed_attestation=True,
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.REGISTRATION)
    return ok()


@csrf_exempt
@require_POST
def assertion_options(request: HttpRequest) -> JsonResponse:
    try:
        data = read_json_object(request)
        options = do_begin_sign_in(
            ceremonies(request),
            username=_username(data),
            user_verification=_choice(data, "userVerification", _UV, UserVerification.PREFERRED),
            reveal_unknown_users=True,
        )
        if _extensions(data):
            options["extensions"] = data["extensions"]
    except errors.ThresholdError as error:
        return failed(error, Surface.AUTHENTICATION)
    return ok(options)


@csrf_exempt
@require_POST
def assertion_result(request: HttpRequest) -> JsonResponse:
    try:
        do_finish_sign_in(
            ceremonies(request), read_credential(request), audit_origin(request), policy=_RULES
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.AUTHENTICATION)
    return ok()
