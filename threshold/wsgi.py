"""The WSGI application: Django, with the lean sign-in path in front (passkeys/lean.py), and
in front of both the forwarding headers of an untrusted peer dropped (web/proxy.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "threshold.settings")
django_application = get_wsgi_application()

from threshold.passkeys.lean import LeanSignInApplication  # noqa: E402 - needs Django set up
from threshold.web.proxy import ForwardedHeaders  # noqa: E402 - needs Django set up

application = ForwardedHeaders(LeanSignInApplication(django_application))
