"""/.well-known/assetlinks.json, /.well-known/apple-app-site-association, /.well-known/webauthn.

The documents Android, Apple and browsers fetch from https://<RP ID>/ before the
company's apps or related origins may use its passkeys: their JSON shapes
(Google's Credential Manager docs, Apple's associated domains, WebAuthn L3
§5.11), served publicly and cacheably, and 404 when nothing is configured.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from django.test import Client

from tests.integration.conftest import Browser, sign_in
from threshold.config import load
from threshold.core.encoding import b64url_encode

pytestmark = pytest.mark.django_db

RELEASE_KEY = hashlib.sha256(b"release signing certificate").digest()
UPLOAD_KEY = hashlib.sha256(b"upload signing certificate").digest()

ASSETLINKS = "/.well-known/assetlinks.json"
AASA = "/.well-known/apple-app-site-association"
WEBAUTHN = "/.well-known/webauthn"


@pytest.fixture
def configured(settings, tmp_path):
    loaded = load(
        {
            "THRESHOLD_VAR_DIR": str(tmp_path),
            "THRESHOLD_SECRET_KEY": "test-key-" * 5,
            "THRESHOLD_ANDROID_APPS": (
                f"com.example.app={RELEASE_KEY.hex(':')},"
                f"com.example.app={UPLOAD_KEY.hex(':').upper()},"
                f"com.example.admin={RELEASE_KEY.hex(':')}"
            ),
            "THRESHOLD_IOS_APPS": "ABCDE12345.com.example.app,ABCDE12345.com.example.admin",
            "THRESHOLD_RELATED_ORIGINS": (
                "https://login.example.co.uk,https://login.example.de,https://example.com"
            ),
        }
    )
    settings.THRESHOLD = dataclasses.replace(
        settings.THRESHOLD,
        rp=loaded.rp,
        android_apps=loaded.android_apps,
        ios_apps=loaded.ios_apps,
        related_origins=loaded.related_origins,
    )
    return loaded


def fetch(path: str, **extra):
    """As the platforms fetch: no cookies, no session, no CSRF token, redirects not followed."""
    response = Client().get(path, **extra)
    assert response.status_code == 200, (path, response.status_code)
    assert response["Content-Type"] == "application/json"
    assert "public" in response["Cache-Control"]
    assert "max-age=3600" in response["Cache-Control"]
    assert not response.cookies, response.cookies
    # The strict CSP still applies: the documents are data, nothing runs.
    assert "script-src 'self'" in response["Content-Security-Policy"]
    return json.loads(response.content)


def test_assetlinks_lists_each_android_app_with_its_fingerprints(configured):
    def fingerprint(key: bytes) -> str:
        return ":".join(f"{byte:02X}" for byte in key)

    relation = [
        "delegate_permission/common.handle_all_urls",
        "delegate_permission/common.get_login_creds",
    ]
    assert fetch(ASSETLINKS) == [
        {
            "relation": relation,
            "target": {
                "namespace": "android_app",
                "package_name": "com.example.app",
                "sha256_cert_fingerprints": [fingerprint(RELEASE_KEY), fingerprint(UPLOAD_KEY)],
            },
        },
        {
            "relation": relation,
            "target": {
                "namespace": "android_app",
                "package_name": "com.example.admin",
                "sha256_cert_fingerprints": [fingerprint(RELEASE_KEY)],
            },
        },
    ]
    # The same keys' hashes are what the apps send as their origins.
    assert configured.rp.app_origins >= {
        "android:apk-key-hash:" + b64url_encode(RELEASE_KEY),
        "android:apk-key-hash:" + b64url_encode(UPLOAD_KEY),
    }


def test_apple_app_site_association_lists_the_ios_apps_for_web_credentials(configured):
    assert fetch(AASA) == {
        "webcredentials": {"apps": ["ABCDE12345.com.example.app", "ABCDE12345.com.example.admin"]}
    }


def test_webauthn_lists_the_related_origins_in_the_configured_order(configured):
    assert fetch(WEBAUTHN) == {
        "origins": [
            "https://login.example.co.uk",
            "https://login.example.de",
            "https://example.com",
        ]
    }


@pytest.mark.parametrize("path", [ASSETLINKS, AASA, WEBAUTHN])
def test_signed_in_people_get_the_same_documents(configured, ada, path):
    anonymous = fetch(path)
    browser = Browser()
    assert sign_in(browser, ada.authenticator).status_code == 200
    response = browser.get(path)
    assert response.status_code == 200
    assert json.loads(response.content) == anonymous


@pytest.mark.parametrize("path", [ASSETLINKS, AASA, WEBAUTHN])
def test_head_is_answered_too(configured, path):
    response = Client().head(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", [ASSETLINKS, AASA, WEBAUTHN])
def test_nothing_configured_answers_404(path):
    response = Client().get(path)
    assert response.status_code == 404
    assert not response.cookies


def test_only_the_configured_documents_are_served(settings, tmp_path):
    loaded = load(
        {
            "THRESHOLD_VAR_DIR": str(tmp_path),
            "THRESHOLD_SECRET_KEY": "test-key-" * 5,
            "THRESHOLD_IOS_APPS": "ABCDE12345.com.example.app",
        }
    )
    settings.THRESHOLD = dataclasses.replace(settings.THRESHOLD, ios_apps=loaded.ios_apps)
    assert Client().get(AASA).status_code == 200
    assert Client().get(ASSETLINKS).status_code == 404
    assert Client().get(WEBAUTHN).status_code == 404
