"""Headers, cookies and arguments found by fuzzing: each is refused or cleaned, never a 500 or a
traceback.

The requests go to the production WSGI application (``tests.support.wsgi``), as gunicorn sends
them, because two of them failed before Django's handler ran. ``nul_refused_as_postgresql_does``
makes SQLite refuse a NUL as PostgreSQL does, so the NUL cases fail the same way on both.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from tests.integration.test_fuzz_lean_paths import begun, stored
from tests.support.faults import nul_refused_as_postgresql_does
from tests.support.wsgi import wsgi
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.passkeys.models import Passkey
from threshold.sessions.models import Session
from threshold.sessions.store import SessionStore, is_session_key

pytestmark = pytest.mark.django_db

MULTIPART = b'--zz\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--zz--\r\n'


@pytest.mark.parametrize("path", ["/sign-in", "/settings", "/jwks", "/userinfo", "/authorize"])
def test_a_session_cookie_that_unquotes_to_a_nul_is_no_session(path):
    # Plain ASCII on the wire: Django's cookie parser turns the quoted \000 into a NUL.
    with nul_refused_as_postgresql_does():
        status, _, _ = wsgi(
            "GET", path, CONTENT_TYPE=None, raw_cookie='threshold_session="aaaaaaaaaa\\000bbbbbbbb"'
        )
    assert status in (200, 302, 400, 401), status


def test_a_session_key_is_what_the_store_makes():
    made = SessionStore()._get_new_session_key()
    assert is_session_key(made)
    for not_one in ["", "a" * 31, "a" * 33, "A" * 32, "a" * 31 + "\x00", "a" * 31 + "é", None, 32]:
        assert not is_session_key(not_one), not_one


@pytest.mark.parametrize("charset", ["zlib", "base64", "rot13", "undefined", "punycode", "idna"])
@pytest.mark.parametrize("path", ["/sign-in", "/help/", "/.well-known/openid-configuration"])
def test_a_get_in_a_charset_django_cannot_read_is_a_bad_request(charset, path):
    status, _, content = wsgi(
        "GET", path, QUERY_STRING="next=%2Fsettings", CONTENT_TYPE=f"text/plain; charset={charset}"
    )
    assert status == 400, (status, content[:300])
    assert "(error code <code>bad_request</code>)" in content.decode()


# Found by review: Django parses the Content-Type while it builds the request, outside any
# handler, and raised on these (ValueError, UnicodeError): gunicorn's bare 500 and its traceback
# in the log, whatever the method and path. Plain ASCII on the wire, so gunicorn passes them on.
UNPARSABLE_CONTENT_TYPES = [
    "text/plain; a*=bogus''x",  # an RFC 2231 parameter in an unknown charset
    "application/json; charset*=''utf-8%00",  # a charset with a NUL, percent-encoded
    "text/plain; charset*=idna''x",  # a charset that cannot decode the value
    "text/plain; charset*=unicode_escape''%5Cud800",
    "text/plain; charset*=punycode''%ff",
    "text/plain; charset=utf-8\x00",  # a raw NUL, should a proxy let one through
]


@pytest.mark.parametrize("content_type", UNPARSABLE_CONTENT_TYPES)
@pytest.mark.parametrize(
    ("method", "path", "oauth"),
    [
        ("GET", "/", False),
        ("GET", "/help", False),
        ("HEAD", "/sign-in", False),
        ("POST", "/sign-in/options", False),
        ("POST", "/token", True),
    ],
)
def test_a_content_type_django_cannot_parse_is_refused_not_a_500(
    caplog, content_type, method, path, oauth
):
    before = stored()
    with caplog.at_level(logging.WARNING):
        status, _, content = wsgi(method, path, b"{}", CONTENT_TYPE=content_type)
    assert status == 400, (status, content[:300])
    if oauth:
        assert json.loads(content)["error"] == "invalid_request", content
    elif method != "HEAD":
        assert b"bad_request" in content, content[:300]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    after = stored()
    if oauth:  # the refusal itself is audited, as every refused token request is
        assert after.pop("audit rows") <= before.pop("audit rows") + 1
    assert after == before


@pytest.mark.parametrize("path", ["/help", "/sign-in", "/authorize", "/end-session"])
def test_a_query_string_of_too_many_fields_is_a_400_logged_in_one_line(caplog, path):
    """Found by review: Django refuses a query string of more than 1,000 fields (400) and logs
    ``django.security.TooManyFieldsSent`` at ERROR with its traceback, at anyone's will."""
    too_many = "&".join(f"p{n}=1" for n in range(1001))
    with caplog.at_level(logging.WARNING):
        status, _, _ = wsgi("GET", path, QUERY_STRING=too_many, CONTENT_TYPE=None)
    assert status == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


@pytest.mark.parametrize(
    ("path", "oauth"),
    [
        ("/token", True),
        ("/introspect", True),
        ("/revoke", True),
        ("/userinfo", True),
        ("/sign-in/options", False),
        ("/sign-in/push", False),
        ("/sign-out", False),
        ("/settings/profile", False),
        ("/api/device/v1/enroll", False),
    ],
)
def test_a_form_in_a_charset_django_cannot_read_is_refused_in_its_endpoints_words(path, oauth):
    before = stored()
    status, _, content = wsgi(
        "POST", path, MULTIPART, CONTENT_TYPE="multipart/form-data; boundary=zz; charset=zlib"
    )
    assert 400 <= status < 500, (status, content[:300])
    after = stored()
    if oauth:
        assert json.loads(content)["error"] in ("invalid_request", "invalid_client"), content
        # The refusal itself is audited, as every refused token request is.
        assert after.pop("audit rows") <= before.pop("audit rows") + 1
    assert after == before


def test_a_json_sign_in_in_such_a_charset_goes_down_the_full_stack_and_is_refused(ada):
    cookies, headers, assertion = begun(ada)
    before = stored()
    status, _, content = wsgi(
        "POST",
        "/sign-in/result",
        json.dumps(assertion).encode(),
        cookies,
        **{**headers, "CONTENT_TYPE": "application/json; charset=zlib"},
    )
    assert status == 400, content[:300]
    assert stored() == before


def test_a_proxys_scoped_ipv6_address_is_stored_without_its_zone(ada, settings):
    settings.THRESHOLD = dataclasses.replace(settings.THRESHOLD, proxy_ssl_header=True)
    cookies, headers, assertion = begun(ada)
    status, _, content = wsgi(
        "POST",
        "/sign-in/result",
        json.dumps(assertion).encode(),
        cookies,
        REMOTE_ADDR="127.0.0.1",  # the proxy, on this machine
        HTTP_X_FORWARDED_FOR="2001:db8::1%" + "a" * 30,
        **headers,
    )
    assert status == 200, content[:300]
    assert AuditEvent.objects.filter(action="sign_in.succeeded").get().ip == "2001:db8::1"
    assert Session.objects.filter(ip="2001:db8::1").count() == 1


def test_a_user_agent_is_stored_without_control_characters(ada):
    cookies, headers, assertion = begun(ada)
    with nul_refused_as_postgresql_does():
        status, _, content = wsgi(
            "POST",
            "/sign-in/result",
            json.dumps(assertion).encode(),
            cookies,
            **{**headers, "HTTP_USER_AGENT": "Agent\x00/1.0\x1b[31m"},
        )
        assert status == 200, content[:300]
        status, _, _ = wsgi("GET", "/end-session", CONTENT_TYPE=None, HTTP_USER_AGENT="x\x00")
    assert status < 500
    assert AuditEvent.objects.filter(action="sign_in.succeeded").get().user_agent == "Agent/1.0[31m"
    assert Passkey.objects.get().last_used_user_agent == "Agent/1.0[31m"


@pytest.mark.parametrize(
    "argv",
    [
        # A byte that is not UTF-8 (Python's surrogateescape gives a lone surrogate).
        ["users", "lock", "ada@example.com\udcff"],
        ["recover", "\udcff@example.com"],
        ["groups", "add-member", "staff\udcff", "ada@example.com"],
        ["apps", "rotate-secret", "\udcff"],
        ["invite", "ok@example.com", "--name", "Ada\udcff", "--no-email"],
        ["migrate", "\udcff"],
    ],
)
def test_an_argument_that_is_not_utf8_is_a_usage_error(argv, capsys):
    assert main(argv) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["-1", "0", "99999999999999999999999", "ten"])
def test_an_audit_limit_no_query_can_take_is_a_usage_error(limit, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["audit", "--limit", limit])
    assert exited.value.code == 2
    assert "--limit" in capsys.readouterr().err


def test_an_import_file_that_opens_but_cannot_be_read_is_a_usage_error(capsys):
    assert main(["users", "import", "/proc/self/mem", "--dry-run"]) == 2
    assert "cannot read /proc/self/mem" in capsys.readouterr().err
