"""Every app's URLs, each under its namespace (``{% url 'selfservice:settings' %}``,
``reverse("fallback:password")``); the paths are the apps' own, from the site's root."""

from __future__ import annotations

from django.conf import settings
from django.urls import include, path

urlpatterns = [
    path("", include("threshold.selfservice.urls")),
    path("", include("threshold.sessions.urls")),
    path("", include("threshold.passkeys.urls")),
    path("", include("threshold.fallback.urls")),
    path("", include("threshold.devices.urls")),
    path("", include("threshold.enrollment.urls")),
    path("", include("threshold.help.urls")),
    path("", include("threshold.portal.urls")),
    # The /.well-known documents.
    path("", include("threshold.web.urls")),
    # Single sign-on: the OpenID Connect provider.
    path("", include("threshold.sso.urls")),
]

if settings.THRESHOLD.fido_conformance:
    urlpatterns += [path("", include("threshold.conformance.urls"))]

handler400 = "threshold.web.views.bad_request"
handler403 = "threshold.web.views.permission_denied"
handler404 = "threshold.web.views.not_found"
handler500 = "threshold.web.views.server_error"
