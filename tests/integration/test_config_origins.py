"""Configuring the company's apps and related origins: THRESHOLD_ORIGINS' Android origins,
THRESHOLD_ANDROID_APPS, THRESHOLD_IOS_APPS and THRESHOLD_RELATED_ORIGINS."""

from __future__ import annotations

import hashlib

import pytest

from threshold.config import AndroidApp, ConfigError, load
from threshold.core.encoding import b64url_encode

RELEASE_KEY = hashlib.sha256(b"release signing certificate").digest()
UPLOAD_KEY = hashlib.sha256(b"upload signing certificate").digest()
RELEASE_FINGERPRINT = RELEASE_KEY.hex(":").upper()
RELEASE_ORIGIN = "android:apk-key-hash:" + b64url_encode(RELEASE_KEY)
UPLOAD_ORIGIN = "android:apk-key-hash:" + b64url_encode(UPLOAD_KEY)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {
        "THRESHOLD_VAR_DIR": str(tmp_path),
        "THRESHOLD_SECRET_KEY": "test-key-" * 5,
        "THRESHOLD_RP_ID": "example.com",
        "THRESHOLD_ORIGINS": "https://login.example.com",
    }


def test_nothing_is_published_or_accepted_beyond_the_origins_by_default(env):
    config = load(env)
    assert config.android_apps == ()
    assert config.ios_apps == ()
    assert config.related_origins == ()
    assert config.rp.app_origins == frozenset()
    assert config.rp.related_origins == frozenset()
    assert config.allowed_hosts == ("login.example.com",)


def test_an_android_origin_in_threshold_origins_is_accepted_exactly(env):
    config = load({**env, "THRESHOLD_ORIGINS": f"https://login.example.com, {RELEASE_ORIGIN}"})
    assert config.rp.app_origins == frozenset({RELEASE_ORIGIN})
    # It is no place Threshold serves: not a web origin, a host, or the public URL.
    assert config.rp.origins == frozenset({"https://login.example.com"})
    assert config.allowed_hosts == ("login.example.com",)
    assert config.public_url == "https://login.example.com"
    assert config.https is True


def test_an_android_origin_first_does_not_become_the_public_url(env):
    config = load({**env, "THRESHOLD_ORIGINS": f"{RELEASE_ORIGIN},https://login.example.com"})
    assert config.public_url == "https://login.example.com"


def test_android_apps_are_parsed_merged_and_imply_their_origins(env):
    config = load(
        {
            **env,
            "THRESHOLD_ANDROID_APPS": (
                f"com.example.app={RELEASE_FINGERPRINT}, "
                f"com.example.app = {UPLOAD_KEY.hex(':')},"  # lower case is fine
                f"com.example.app={RELEASE_FINGERPRINT},"  # a repeat is dropped
                f"com.example.admin_tool={RELEASE_FINGERPRINT}"
            ),
        }
    )
    assert config.android_apps == (
        AndroidApp("com.example.app", (RELEASE_KEY, UPLOAD_KEY)),
        AndroidApp("com.example.admin_tool", (RELEASE_KEY,)),
    )
    # Configuring the app configures its origin: one per signing certificate.
    assert config.rp.app_origins == frozenset({RELEASE_ORIGIN, UPLOAD_ORIGIN})
    assert config.rp.origins == frozenset({"https://login.example.com"})
    # assetlinks.json is fetched from https://example.com/.
    assert set(config.allowed_hosts) == {"login.example.com", "example.com"}


def test_ios_apps_are_parsed_and_imply_the_rp_id_origin(env):
    config = load(
        {**env, "THRESHOLD_IOS_APPS": "ABCDE12345.com.example.app, ABCDE12345.com.example.App-2"}
    )
    assert config.ios_apps == ("ABCDE12345.com.example.app", "ABCDE12345.com.example.App-2")
    # iOS apps send clientDataJSON.origin https://<RP ID>.
    assert config.rp.app_origins == frozenset({"https://example.com"})
    assert set(config.allowed_hosts) == {"login.example.com", "example.com"}


def test_related_origins_are_accepted_in_order_and_served(env):
    config = load(
        {
            **env,
            "THRESHOLD_RELATED_ORIGINS": (
                "https://login.example.co.uk, https://login.example.de,"
                " https://login.example.co.uk, https://example-shop.fr:8443"
            ),
        }
    )
    assert config.related_origins == (
        "https://login.example.co.uk",
        "https://login.example.de",
        "https://example-shop.fr:8443",
    )
    assert config.rp.related_origins == frozenset(config.related_origins)
    assert config.rp.origins == frozenset({"https://login.example.com"})
    assert set(config.allowed_hosts) == {
        "login.example.com",
        "example.com",
        "login.example.co.uk",
        "login.example.de",
        "example-shop.fr",
    }


def test_five_labels_of_related_origins_are_allowed(env):
    origins = ",".join(
        f"https://login.{label}.{tld}"
        for label in ("example", "exemple", "beispiel", "ejemplo", "esempio")
        for tld in ("com", "co.uk")
    )
    assert len(load({**env, "THRESHOLD_RELATED_ORIGINS": origins}).related_origins) == 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"THRESHOLD_ORIGINS": RELEASE_ORIGIN + "="},
            "THRESHOLD_ORIGINS: 'android:apk-key-hash:",
        ),
        ({"THRESHOLD_ORIGINS": "android:apk-key-hash:abc"}, "43 characters, no '=' padding"),
        (
            {"THRESHOLD_ORIGINS": RELEASE_ORIGIN},
            "THRESHOLD_ORIGINS must include the web origin",
        ),
        (
            {"THRESHOLD_ANDROID_APPS": RELEASE_FINGERPRINT},
            "must be package=SHA256 fingerprint",
        ),
        (
            {"THRESHOLD_ANDROID_APPS": f"com.example.app:{RELEASE_FINGERPRINT}"},
            "must be package=SHA256 fingerprint",
        ),
        (
            {"THRESHOLD_ANDROID_APPS": f"example={RELEASE_FINGERPRINT}"},
            "must be package=SHA256 fingerprint",
        ),
        (
            {"THRESHOLD_ANDROID_APPS": f"com.example.1app={RELEASE_FINGERPRINT}"},
            "must be package=SHA256 fingerprint",
        ),
        (
            {"THRESHOLD_ANDROID_APPS": "com.example.app=" + RELEASE_KEY.hex()},
            "the fingerprint of com.example.app must be the SHA-256",
        ),
        (
            {"THRESHOLD_ANDROID_APPS": "com.example.app=" + RELEASE_KEY[:20].hex(":")},
            "32 hex pairs separated by colons",
        ),
        ({"THRESHOLD_ANDROID_APPS": "com.example.app="}, "32 hex pairs separated by colons"),
        (
            {"THRESHOLD_ANDROID_APPS": "com.example.app=" + RELEASE_ORIGIN},
            "32 hex pairs separated by colons",
        ),
        ({"THRESHOLD_IOS_APPS": "com.example.app"}, "must be TEAMID.bundle.id"),
        ({"THRESHOLD_IOS_APPS": "abcde12345.com.example.app"}, "must be TEAMID.bundle.id"),
        ({"THRESHOLD_IOS_APPS": "ABCDE12345"}, "must be TEAMID.bundle.id"),
        ({"THRESHOLD_IOS_APPS": "ABCDE12345.com.example.app/"}, "must be TEAMID.bundle.id"),
        (
            {"THRESHOLD_RELATED_ORIGINS": "http://login.example.co.uk"},
            "THRESHOLD_RELATED_ORIGINS: related origin 'http://login.example.co.uk' must be https",
        ),
        (
            {"THRESHOLD_RELATED_ORIGINS": "https://login.example.co.uk/"},
            "no path or trailing slash",
        ),
        (
            {"THRESHOLD_RELATED_ORIGINS": "https://LOGIN.example.co.uk"},
            "write it as browsers send it, 'https://login.example.co.uk'",
        ),
        ({"THRESHOLD_RELATED_ORIGINS": "https://co.uk"}, "no registrable domain"),
        ({"THRESHOLD_RELATED_ORIGINS": RELEASE_ORIGIN}, "is not an origin"),
        (
            {
                "THRESHOLD_RELATED_ORIGINS": ",".join(
                    f"https://login.{label}.com" for label in ("a1", "b2", "c3", "d4", "e5", "f6")
                )
            },
            "names 6 different domain labels (a1, b2, c3, d4, e5, f6); browsers read only "
            "origins with the first 5",
        ),
    ],
    ids=[
        "android-origin-padded",
        "android-origin-short",
        "only-android-origins",
        "android-app-no-package",
        "android-app-colon-separator",
        "android-package-one-segment",
        "android-package-segment-starts-with-digit",
        "android-fingerprint-without-colons",
        "android-fingerprint-sha1-length",
        "android-fingerprint-empty",
        "android-fingerprint-is-an-origin",
        "ios-app-no-team",
        "ios-team-lower-case",
        "ios-no-bundle",
        "ios-slash",
        "related-http",
        "related-trailing-slash",
        "related-upper-case",
        "related-public-suffix",
        "related-android",
        "related-six-labels",
    ],
)
def test_misconfigured_apps_and_origins_stop_start_up_with_a_clear_message(env, changes, message):
    with pytest.raises(ConfigError) as raised:
        load({**env, **changes})
    assert message in str(raised.value)
