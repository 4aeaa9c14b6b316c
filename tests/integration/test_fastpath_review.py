"""Outside review of the fast sign-in path (commit 7e2a994, threshold/passkeys/fastpath.py).

Every request goes to the production WSGI application as gunicorn would call it
(tests/support/wsgi.py, ``as_served``), and is compared with the same request with
``THRESHOLD_FAST_SIGN_IN`` off (the lean path and Django).

Checked and found to answer as the lean path does (status, body, every header and
Set-Cookie, the session row and its decoded data, the audit row): Origin (``null``, case,
trailing slash, scheme, default and other ports), Host (case, trailing dot, IPv4 and IPv6
literals, a disallowed host with a trusted Origin, two Host headers joined), the scheme
over HTTP, HTTPS and behind a trusted and an untrusted proxy (X-Forwarded-Proto),
masked, lower-cased and missing CSRF tokens, a quoted CSRF cookie, an empty session
cookie, Content-Type with a charset / in capitals / missing / text, no Content-Length,
``+1`` as Content-Length, ``?next=``, SCRIPT_NAME, no REMOTE_ADDR, no flow token,
Referer without Origin, malformed and deeply nested result bodies (no error logged), the
organisation policy's rules (AAGUID deny and allow lists, attestation, algorithms, user
verification), a refused signature and a locked account (one audit row each), and the
settings the fast path turns itself off for (USE_X_FORWARDED_HOST, CSRF_USE_SESSIONS,
cookie domain and path, CSRF trusted-origin wildcards, SECURE_SSL_REDIRECT over HTTP,
THRESHOLD_FAST_SIGN_IN=False), its settings cache cleared on ``setting_changed``.

Found wrong, and fixed: a refused username-first result cost more work for a real credential
ID than for a decoy one, which the decoys exist to prevent (``test_a_real_id_and_a_decoy_...``):
the fast path now does a decoy's verification before it hands an unknown ID over.
"""

from __future__ import annotations

import cProfile
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings

from tests.integration.conftest import Person
from tests.support.wsgi import wsgi
from threshold.audit.models import AuditEvent
from threshold.sessions import flow
from threshold.sessions.models import Session

ORIGIN = "http://localhost:8000"
# A CSRF secret as Django sets it in the cookie (32 letters and digits), sent as the token too.
CSRF_SECRET = "abcdefghijklmnopqrstuvwxyzABCDEF"
CEREMONY = Path("threshold") / "core" / "ceremony.py"


def browser_headers() -> dict[str, Any]:
    """What webauthn.js sends, from loopback (no per-network options limit)."""
    return {
        "HTTP_ORIGIN": ORIGIN,
        "HTTP_X_CSRFTOKEN": CSRF_SECRET,
        "HTTP_X_THRESHOLD_FLOW": flow.issue_flow_token(flow.Flow.SIGN_IN),
        "REMOTE_ADDR": "127.0.0.1",
    }


def options(cookies: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    status, _, content = wsgi(
        "POST",
        "/sign-in/options",
        json.dumps(body).encode(),
        cookies,
        as_served=True,
        **browser_headers(),
    )
    assert status == 200, content
    public_key: dict[str, Any] = json.loads(content)["publicKey"]
    return public_key


def verifications(run: Callable[[], None]) -> int:
    """How many times ``core.ceremony.finish_authentication`` (the WebAuthn checks and the
    signature verification, which ``decoys.verify_as_decoy`` runs too) ran during ``run()``:
    counted by the profiler, nothing replaced."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        run()
    finally:
        profile.disable()
    profile.create_stats()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = profile.stats
    return sum(
        int(calls)
        for (filename, _, name), (_, calls, *_) in stats.items()
        if name == "finish_authentication" and filename.endswith(str(CEREMONY))
    )


def refused_result_work(person: Person, username: str) -> int:
    """Username-first options for ``username``, then a result naming the first credential ID
    they offer, with a wrong signature (what anyone can send): the verifications it costs."""
    cookies = {"threshold_csrf": CSRF_SECRET}
    offered = options(cookies, {"username": username})
    credential_id = offered["allowCredentials"][0]["id"]
    assertion = person.authenticator.get(
        {**offered, "allowCredentials": []}, ORIGIN, tamper_signature=True, user_handle=None
    )
    assertion["id"] = assertion["rawId"] = credential_id
    body = json.dumps(assertion).encode()
    answer: list[tuple[int, bytes]] = []

    def send() -> None:
        status, _, content = wsgi(
            "POST", "/sign-in/result", body, cookies, as_served=True, **browser_headers()
        )
        answer.append((status, content))

    work = verifications(send)
    ((status, content),) = answer
    assert status == 400, content
    assert json.loads(content)["status"] == "failed"
    return work


@pytest.mark.django_db(transaction=True)
def test_a_real_id_and_a_decoy_id_cost_the_same_work_when_refused(ada: Person) -> None:
    # Without the fast path the decoy design holds: one verification either way.
    with override_settings(THRESHOLD_FAST_SIGN_IN=False):
        assert refused_result_work(ada, "ada@example.com") == refused_result_work(
            ada, "nobody@example.com"
        )
    real = refused_result_work(ada, "ada@example.com")
    decoy = refused_result_work(ada, "nobody@example.com")
    assert real == decoy, f"{real} verifications for a real ID, {decoy} for a decoy"


@pytest.mark.django_db(transaction=True)
def test_two_results_for_one_ceremony_at_once_sign_in_once(ada: Person) -> None:
    """The fast path's own transaction (BEGIN IMMEDIATE on the driver's connection), two
    workers' threads racing with one ceremony: one session, one success, one refusal audited."""
    cookies = {"threshold_csrf": CSRF_SECRET}
    offered = options(cookies, {})
    body = json.dumps(ada.authenticator.get(offered, ORIGIN)).encode()
    headers = browser_headers()
    start = threading.Barrier(2)
    statuses: list[int] = []

    def send() -> None:
        start.wait()
        try:
            statuses.append(
                wsgi("POST", "/sign-in/result", body, dict(cookies), as_served=True, **headers)[0]
            )
        finally:
            connections.close_all()

    sessions = Session.objects.filter(user=ada.user).count()
    audited = AuditEvent.objects.count()
    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 400]
    assert Session.objects.filter(user=ada.user).count() == sessions + 1
    rows = list(AuditEvent.objects.order_by("id").values_list("action", "reason")[audited:])
    assert sorted(rows) == [("sign_in.failed", "challenge_missing"), ("sign_in.succeeded", "")]
