"""The WSGI application: Django, with the lean sign-in path in front (passkeys/lean.py), the
fast sign-in path in front of that (passkeys/fastpath.py: an anonymous browser's ordinary
sign-in, anything else handed to the lean path), and in front of all of them the forwarding
headers of an untrusted peer dropped (web/proxy.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "threshold.settings")
django_application = get_wsgi_application()

from threshold.passkeys.fastpath import FastSignInApplication  # noqa: E402 - needs Django set up
from threshold.passkeys.lean import LeanSignInApplication  # noqa: E402 - needs Django set up
from threshold.web.proxy import ForwardedHeaders  # noqa: E402 - needs Django set up

lean_application = LeanSignInApplication(django_application)
application = ForwardedHeaders(FastSignInApplication(lean_application))
