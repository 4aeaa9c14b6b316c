from __future__ import annotations

from django.conf import settings
from django.urls import path
from django.views.generic.base import RedirectView

from threshold.conformance import views as conformance
from threshold.enrollment import views as enrollment
from threshold.fallback import views as fallback
from threshold.help import views as help_pages
from threshold.passkeys import views as passkeys
from threshold.selfservice import views as selfservice
from threshold.sessions import views as sessions
from threshold.web import wellknown

urlpatterns = [
    path("", selfservice.home, name="home"),
    path("sign-in", sessions.sign_in_page, name="sign-in"),
    path("sign-in/options", passkeys.sign_in_options, name="sign-in-options"),
    path("sign-in/result", passkeys.sign_in_result, name="sign-in-result"),
    path("sign-out", sessions.sign_out_page, name="sign-out"),
    path("sign-in/password", fallback.password_step, name="sign-in-password"),
    path("sign-in/code", fallback.code_step, name="sign-in-code"),
    path("sign-in/set-up-passkey", fallback.passkey_prompt, name="passkey-prompt"),
    path("settings/fallback/set-up", fallback.set_up, name="fallback-set-up"),
    path("settings/fallback/recovery-codes", fallback.new_recovery_codes, name="recovery-codes"),
    path("settings/fallback/remove", fallback.remove, name="fallback-remove"),
    path(
        "settings/sessions/sign-out-others",
        sessions.sign_out_other_sessions,
        name="sign-out-other-sessions",
    ),
    path("enroll/<str:token>", enrollment.enroll_page, name="enroll"),
    path("enroll/<str:token>/options", enrollment.enroll_options, name="enroll-options"),
    path("enroll/<str:token>/result", enrollment.enroll_result, name="enroll-result"),
    path("settings", selfservice.settings_page, name="settings"),
    path("settings/profile", selfservice.change_name, name="change-name"),
    path("settings/verify", selfservice.verify_page, name="verify"),
    path("settings/verify/options", selfservice.verify_options, name="verify-options"),
    path("settings/verify/result", selfservice.verify_result, name="verify-result"),
    path("settings/security-methods/add", selfservice.add_page, name="add-passkey"),
    path("settings/security-methods/add/options", selfservice.add_options, name="add-options"),
    path("settings/security-methods/add/result", selfservice.add_result, name="add-result"),
    path("settings/security-methods/<int:passkey_id>/rename", selfservice.rename, name="rename"),
    path("settings/security-methods/<int:passkey_id>/remove", selfservice.remove, name="remove"),
    path("help/guide", help_pages.guide_index, name="guide-index"),
    path("help/guide/<str:platform>", help_pages.guide, name="guide"),
    # The guide's first address, from when it needed signing in.
    path("settings/guide", RedirectView.as_view(pattern_name="guide-index", permanent=True)),
    path(
        "settings/guide/<str:platform>",
        RedirectView.as_view(pattern_name="guide", permanent=True),
    ),
    path("help/errors", help_pages.errors, name="help-errors"),
    path(".well-known/assetlinks.json", wellknown.assetlinks, name="assetlinks"),
    path(
        ".well-known/apple-app-site-association",
        wellknown.apple_app_site_association,
        name="apple-app-site-association",
    ),
    path(".well-known/webauthn", wellknown.webauthn, name="well-known-webauthn"),
]

if settings.THRESHOLD.fido_conformance:
    urlpatterns += [
        path("attestation/options", conformance.attestation_options),
        path("attestation/result", conformance.attestation_result),
        path("assertion/options", conformance.assertion_options),
        path("assertion/result", conformance.assertion_result),
    ]

handler400 = "threshold.web.views.bad_request"
handler403 = "threshold.web.views.permission_denied"
handler404 = "threshold.web.views.not_found"
handler500 = "threshold.web.views.server_error"
