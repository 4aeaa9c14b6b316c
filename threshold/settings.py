"""Django settings, derived entirely from ``threshold.config`` (the environment)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from threshold import config as _config

try:
    THRESHOLD = _config.load()
except _config.ConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from exc

SECRET_KEY = THRESHOLD.secret_key
DEBUG = THRESHOLD.debug
ALLOWED_HOSTS = list(THRESHOLD.allowed_hosts)
CSRF_TRUSTED_ORIGINS = sorted(THRESHOLD.rp.origins | THRESHOLD.rp.related_origins)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    # Lowest layer first (docs/architecture.md, "Layers"). The sign-in methods are
    # listed in Settings in the order their apps are here (threshold.accounts.methods).
    "threshold.accounts",
    "threshold.audit",
    "threshold.policy",
    "threshold.groups",
    "threshold.web",
    "threshold.sessions",
    "threshold.passkeys",
    "threshold.fallback",
    "threshold.devices",
    "threshold.enrollment",
    "threshold.selfservice",
    "threshold.help",
    "threshold.conformance",
    "threshold.portal",
    # Single sign-on: Threshold as an OpenID Connect provider (django-oauth-toolkit).
    "oauth2_provider",
    "threshold.sso",
]

MIDDLEWARE = [
    # Anonymous passkey sign-ins skip the rest of the stack (threshold/passkeys/lean.py).
    "threshold.passkeys.lean.LeanSignInMiddleware",
    # An app's /token and /userinfo calls skip it too (threshold/sso/lean.py).
    "threshold.sso.lean.LeanTokenMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check, which parses form bodies (threshold/web/bodies.py).
    "threshold.web.bodies.RequestBodyMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "threshold.sessions.middleware.SessionTimeoutMiddleware",
    # Sends the ceremony tokens a view began (threshold/passkeys/http.py).
    "threshold.passkeys.http.CeremonyCookieMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A form on the way to an app may end at that app (CSP form-action; threshold/sso/).
    "threshold.sso.middleware.FormActionMiddleware",
    # A HEAD is the GET without its body; a bare 405 gets the catalog's words (web/methods.py).
    "threshold.web.methods.HeadMiddleware",
    "threshold.web.methods.MethodNotAllowedMiddleware",
]

ROOT_URLCONF = "threshold.urls"
WSGI_APPLICATION = "threshold.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "threshold.web.context.site",
            ],
        },
    },
]

DATABASES = {"default": THRESHOLD.database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["threshold.accounts.backends.PasskeyBackend"]
PASSWORD_HASHERS = ["threshold.accounts.hashers.Argon2idHasher"]
# Fallback passwords (always with a second factor): NIST SP 800-63B-4 asks for
# at least 8 characters then, allows at least 64, and a blocklist of common ones.
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
]
THRESHOLD_MAX_PASSWORD_LENGTH = 128
LOGIN_URL = "sessions:sign-in"

# Sessions live in the database so that sign-out and timeouts end them for real.
# The model is threshold.sessions.models.Session (django.contrib.sessions is not installed).
SESSION_ENGINE = "threshold.sessions.store"
# Over HTTPS the session and CSRF cookies are "__Host-" cookies: a browser takes them only
# from this host, Secure, for the whole path, so a sibling subdomain (under an RP ID that is
# the bare domain) cannot plant one of its own beside them and swap the person's session.
COOKIE_PREFIX = "__Host-" if THRESHOLD.https else ""
SESSION_COOKIE_NAME = f"{COOKIE_PREFIX}threshold_session"
# The session row lasts at most THRESHOLD_SESSION_MAX_AGE; its cookie ends with the browser
# (no Max-Age or Expires), so closing the browser of a shared computer signs its person out,
# as Okta and Keycloak do unless someone asks to stay signed in.
SESSION_COOKIE_AGE = THRESHOLD.session_max_age
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = THRESHOLD.https
THRESHOLD_SESSION_IDLE_TIMEOUT = THRESHOLD.session_idle_timeout
THRESHOLD_SESSION_MAX_AGE = THRESHOLD.session_max_age

CSRF_COOKIE_NAME = f"{COOKIE_PREFIX}threshold_csrf"
CSRF_COOKIE_SECURE = THRESHOLD.https
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "threshold.web.views.csrf_failure"

# Django sends HSTS only on requests it sees as secure (directly, or through
# the proxy header when THRESHOLD_BEHIND_TLS_PROXY=1).
SECURE_HSTS_SECONDS = 31536000 if THRESHOLD.https else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = False
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if THRESHOLD.proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        # The phone web app at /verify/: its manifest and its service worker, both from here.
        "manifest-src": ["'self'"],
        "worker-src": ["'self'"],
    }
}

# Request bodies are small JSON documents; cap them (the views answer 413).
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
THRESHOLD_MAX_JSON_BODY = 64 * 1024
# An anonymous browser's ordinary passkey sign-in answered in plain WSGI, in front of the lean
# path (threshold/passkeys/fastpath.py); THRESHOLD_FAST_SIGN_IN=0 leaves it to the lean path.
THRESHOLD_FAST_SIGN_IN = THRESHOLD.fast_sign_in

STATIC_URL = "/static/"
STATIC_ROOT = THRESHOLD.var_dir / "static"
# Content-hashed names (cached for a year, immutable) and gzip copies, written by
# collectstatic, which `threshold serve` runs at start-up (the tests run it too).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

EMAIL_SUBJECT_PREFIX = ""
globals().update(THRESHOLD.email)

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
USE_I18N = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Redacted as the access log is: a path Django names may carry a link's token.
    "formatters": {
        "plain": {
            "()": "threshold.cli.accesslog.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "filters": {"one_line": {"()": "threshold.cli.accesslog.OneLine"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.security.DisallowedHost": {"filters": ["one_line"]},
        # Refusals anyone can cause as well (a query string of 1,001 fields; too many files,
        # a body over the cap, should Django itself refuse them): one line each.
        "django.security.TooManyFieldsSent": {"filters": ["one_line"]},
        "django.security.TooManyFilesSent": {"filters": ["one_line"]},
        "django.security.RequestDataTooBig": {"filters": ["one_line"]},
        # Its INFO lines are clear_expired's counts, which `threshold cleanup` (hourly from
        # cron) prints itself: cron would mail them every hour.
        "oauth2_provider": {"level": "WARNING"},
    },
}

# --- Single sign-on (threshold/sso/): django-oauth-toolkit as an OpenID Connect provider ---------
# The application model is ours (ES256, SHA-256 client secrets, groups, logout URIs); the
# validator and the views fill DOT's gaps (auth_time, amr/acr, sid, max_age, acr_values).
OAUTH2_PROVIDER_APPLICATION_MODEL = "sso.Application"
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": THRESHOLD.public_url,
    "OAUTH2_VALIDATOR_CLASS": "threshold.sso.validator.Validator",
    "SCOPES": {
        "openid": "Sign you in",
        "profile": "Your name and username",
        "email": "Your email address",
        "groups": "The groups you are in",
        "offline_access": "Stay signed in to the app",
    },
    "DEFAULT_SCOPES": ["openid"],
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
    # DOT's default reads a device-code grant's row before any client authentication, and a
    # missing one is a 500; Threshold offers no device-code grant (sso.views.token refuses
    # every grant type but the two above before oauthlib sees it).
    "OAUTH_PRE_TOKEN_VALIDATION": [],
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ROTATE_REFRESH_TOKEN": True,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 600,
    "ID_TOKEN_EXPIRE_SECONDS": 600,
    "REFRESH_TOKEN_EXPIRE_SECONDS": 30 * 24 * 3600,
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http"],
    # oauthlib's tokens, from one draw of the CSPRNG each (threshold/sso/validator.py).
    "ACCESS_TOKEN_GENERATOR": "threshold.sso.validator.generate_token",
}
