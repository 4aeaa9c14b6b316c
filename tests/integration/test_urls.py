"""URLs: a urls.py per app under its namespace, every path where it always was, and no page,
view or script that writes an internal path itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import resolve, reverse

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((REPO / "threshold").glob("*/templates/**/*.html"))
SCRIPTS = sorted((REPO / "threshold").glob("*/static/**/*.js"))

# Every named URL and its path, as people and their bookmarks know it.
PATHS = [
    ("selfservice:home", (), "/"),
    ("selfservice:settings", (), "/settings"),
    ("selfservice:change-name", (), "/settings/profile"),
    ("selfservice:verify", (), "/settings/verify"),
    ("selfservice:verify-options", (), "/settings/verify/options"),
    ("selfservice:verify-result", (), "/settings/verify/result"),
    ("selfservice:add", (), "/settings/security-methods/add"),
    ("selfservice:add-options", (), "/settings/security-methods/add/options"),
    ("selfservice:add-result", (), "/settings/security-methods/add/result"),
    ("selfservice:rename", (7,), "/settings/security-methods/7/rename"),
    ("selfservice:remove", (7,), "/settings/security-methods/7/remove"),
    ("sessions:sign-in", (), "/sign-in"),
    ("sessions:sign-out", (), "/sign-out"),
    ("sessions:sign-out-others", (), "/settings/sessions/sign-out-others"),
    ("passkeys:sign-in-options", (), "/sign-in/options"),
    ("passkeys:sign-in-result", (), "/sign-in/result"),
    ("fallback:password", (), "/sign-in/password"),
    ("fallback:code", (), "/sign-in/code"),
    ("fallback:passkey-prompt", (), "/sign-in/set-up-passkey"),
    ("fallback:set-up", (), "/settings/fallback/set-up"),
    ("fallback:recovery-codes", (), "/settings/fallback/recovery-codes"),
    ("fallback:remove", (), "/settings/fallback/remove"),
    ("enrollment:enroll", ("t0k3n",), "/enroll/t0k3n"),
    ("enrollment:options", ("t0k3n",), "/enroll/t0k3n/options"),
    ("enrollment:result", ("t0k3n",), "/enroll/t0k3n/result"),
    ("help:errors", (), "/help/errors"),
    ("help:guide-index", (), "/help/guide"),
    ("help:guide", ("macos",), "/help/guide/macos"),
    ("web:assetlinks", (), "/.well-known/assetlinks.json"),
    ("web:apple-app-site-association", (), "/.well-known/apple-app-site-association"),
    ("web:well-known-webauthn", (), "/.well-known/webauthn"),
    ("conformance:attestation-options", (), "/attestation/options"),
    ("conformance:attestation-result", (), "/attestation/result"),
    ("conformance:assertion-options", (), "/assertion/options"),
    ("conformance:assertion-result", (), "/assertion/result"),
    ("devices:set-up", (), "/settings/device-app/set-up"),
    ("devices:confirm", ("e1d",), "/settings/device-app/set-up/e1d"),
    ("selfservice:rename-device", ("d3v",), "/settings/device-app/d3v/rename"),
    ("devices:remove", ("d3v",), "/settings/device-app/d3v/remove"),
    ("devices:push", (), "/sign-in/push"),
    ("devices:push-wait", (), "/sign-in/push/wait"),
    ("devices:push-state", (), "/sign-in/push/state"),
    ("devices:push-finish", (), "/sign-in/push/finish"),
    ("devices:verify-app", (), "/verify/"),
    ("devices:api-enroll", (), "/api/device/v1/enroll"),
    ("devices:api-enrollment", (), "/api/device/v1/enrollment"),
    ("devices:api-attest", (), "/api/device/v1/attest"),
    ("devices:api-setup-codes", (), "/api/device/v1/setup-codes"),
    ("devices:api-confirm", (), "/api/device/v1/setup-codes/confirm"),
    ("devices:api-pending", (), "/api/device/v1/approvals/pending"),
    ("devices:api-answer", (), "/api/device/v1/approvals/answer"),
    ("devices:api-account", (), "/api/device/v1/account"),
    ("devices:api-remove", (), "/api/device/v1/remove"),
]


@pytest.mark.parametrize(("name", "args", "path"), PATHS, ids=[name for name, _, _ in PATHS])
def test_every_named_url_keeps_its_path(name, args, path):
    assert reverse(name, args=args) == path
    assert resolve(path).view_name == name


# A path of this site where an attribute's value starts, or where a query parameter's does
# (?next=/settings), once template tags are taken out; static files may be written out.
_ATTRIBUTE = re.compile(r"""\b(href|action|src|formaction|data-[\w-]+)\s*=\s*(["'])(.*?)\2""", re.S)
_TAG = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.S)
_INTERNAL_PATH = re.compile(r"(?:^|=)\s*/(?!/)(?!static/)")


def hard_coded_paths(html: str) -> list[str]:
    found = []
    # Template tags first (they may hold quotes): what is left of a value is written out.
    for match in _ATTRIBUTE.finditer(_TAG.sub("", html)):
        if _INTERNAL_PATH.search(match.group(3)):
            found.append(match.group(0))
    return found


def test_the_check_finds_paths_written_out():
    """The check below, on what templates used to say."""
    assert hard_coded_paths('<a class="button" href="/sign-in">') == ['href="/sign-in"']
    sign_in = "{% url 'sessions:sign-in' %}"
    assert not hard_coded_paths(
        f'<a href="{sign_in}{{% if n != "/" %}}?next={{{{ n }}}}{{% endif %}}">'
    )
    assert hard_coded_paths('<form method="post" action="/settings/profile">')
    assert hard_coded_paths('<a href="/settings/security-methods/{{ passkey.pk }}/remove">')
    assert hard_coded_paths('<section data-options-url="/enroll/{{ token }}/options">')
    assert hard_coded_paths("""<a href="{% url 'sessions:sign-in' %}?next=/settings">""")
    assert hard_coded_paths("""<a href="{% if a %}/settings{% endif %}">""")
    assert hard_coded_paths(f'<a href="{sign_in}{{% if a != "/" %}}/x{{% endif %}}">')
    assert not hard_coded_paths("""<a href="{% url 'selfservice:settings' %}#fallback">""")
    assert not hard_coded_paths("""<link href="{% static 'threshold/threshold.css' %}">""")
    assert not hard_coded_paths('<link href="/static/threshold/threshold.css">')
    assert not hard_coded_paths('<a href="https://support.apple.com/en-us/102195">')
    assert not hard_coded_paths('<a href="{{ link.url }}">')


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(REPO)))
def test_templates_name_internal_urls_instead_of_writing_paths(template):
    html = template.read_text()
    assert hard_coded_paths(html) == []
    # And by their namespace: {% url 'app:name' %}.
    for name in re.findall(r"""\{%\s*url\s+['"]([^'"]+)['"]""", html):
        assert ":" in name, f"{{% url '{name}' %}} has no namespace"


def test_templates_were_found():
    assert len(TEMPLATES) > 20
    assert SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_take_urls_from_the_page(script):
    """webauthn.js and settings.js read the URLs they use from data- attributes."""
    assert re.findall(r"""["'`]/[\w.-]""", script.read_text()) == []
