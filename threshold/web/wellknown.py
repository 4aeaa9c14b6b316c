"""The /.well-known documents that let the company's apps and sibling domains use its passkeys.

Each is built from configuration (``threshold.config``: THRESHOLD_ANDROID_APPS,
THRESHOLD_IOS_APPS, THRESHOLD_RELATED_ORIGINS) and answers 404 when nothing of
its kind is configured. They are public: Android, Apple's CDN and browsers
fetch them without cookies, so the views read no session and set no cookie.
They are JSON (``application/json``), never a redirect, and cacheable: the
platforms cache them anyway, and they change only with the configuration.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

# An hour: short enough that a changed configuration reaches browsers the same day.
MAX_AGE_SECONDS = 3600

# Both relations, as Google's Credential Manager documentation lists them for an
# app and a site that share sign-in credentials (developer.android.com, identity/
# credential-manager/prerequisites): get_login_creds shares credentials, and
# Google's credential-sharing codelab calls handle_all_urls (the App Links
# relation) the strict requirement for passkeys. It opens the site's links in
# the app only if the app's manifest claims them too.
ANDROID_RELATIONS = (
    "delegate_permission/common.handle_all_urls",
    "delegate_permission/common.get_login_creds",
)


def _document(data: Any) -> HttpResponse:
    response = JsonResponse(data, safe=False, json_dumps_params={"indent": 2})
    patch_cache_control(response, public=True, max_age=MAX_AGE_SECONDS)
    return response


@require_safe
def assetlinks(request: HttpRequest) -> HttpResponse:
    """/.well-known/assetlinks.json: Digital Asset Links statements for the Android apps."""
    apps = settings.THRESHOLD.android_apps
    if not apps:
        raise Http404("no Android apps are configured")
    return _document(
        [
            {
                "relation": list(ANDROID_RELATIONS),
                "target": {
                    "namespace": "android_app",
                    "package_name": app.package_name,
                    # Colon-separated upper-case hex, as keytool prints it.
                    "sha256_cert_fingerprints": [
                        fingerprint.hex(":").upper() for fingerprint in app.fingerprints
                    ],
                },
            }
            for app in apps
        ]
    )


@require_safe
def apple_app_site_association(request: HttpRequest) -> HttpResponse:
    """/.well-known/apple-app-site-association: the iOS apps that share the web credentials."""
    apps = settings.THRESHOLD.ios_apps
    if not apps:
        raise Http404("no iOS apps are configured")
    return _document({"webcredentials": {"apps": list(apps)}})


@require_safe
def webauthn(request: HttpRequest) -> HttpResponse:
    """/.well-known/webauthn: the related origins that may use the RP ID (WebAuthn L3 §5.11).

    In the configured order: browsers read the origins of the first five
    labels only (§5.11.1), which configuration enforces.
    """
    origins = settings.THRESHOLD.related_origins
    if not origins:
        raise Http404("no related origins are configured")
    return _document({"origins": list(origins)})
