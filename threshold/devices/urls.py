from django.urls import path

from threshold.devices import api, views

app_name = "devices"
urlpatterns = [
    # Settings → Security Methods → Threshold Verify.
    path("settings/device-app/set-up", views.set_up, name="set-up"),
    path("settings/device-app/set-up/<str:enrollment_id>", views.confirm, name="confirm"),
    path("settings/device-app/<str:device_id>/remove", views.remove, name="remove"),
    # Sign-in with a push to Threshold Verify.
    path("sign-in/push", views.push, name="push"),
    path("sign-in/push/wait", views.push_wait, name="push-wait"),
    path("sign-in/push/start", views.push_start, name="push-start"),
    path("sign-in/push/state", views.push_state, name="push-state"),
    path("sign-in/push/finish", views.push_finish, name="push-finish"),
    path("sign-in/push/cancel", views.push_cancel, name="push-cancel"),
    # "Verify it's you" with a push, for a signed-in person without a passkey at hand.
    path("settings/verify/push", views.step_up_push, name="step-up-push"),
    path("settings/verify/push/wait", views.step_up_push_wait, name="step-up-push-wait"),
    path("settings/verify/push/state", views.step_up_push_state, name="step-up-push-state"),
    path("settings/verify/push/finish", views.step_up_push_finish, name="step-up-push-finish"),
    path("settings/verify/push/cancel", views.step_up_push_cancel, name="step-up-push-cancel"),
    # Where the set-up QR code points (the code rides in the fragment).
    path("verify/", views.verify_app, name="verify-app"),
    # The device API, version 1 (docs/device-api.md).
    path("api/device/v1/enroll", api.enroll, name="api-enroll"),
    path("api/device/v1/enrollment", api.enrollment, name="api-enrollment"),
    path("api/device/v1/attest", api.attest, name="api-attest"),
    path("api/device/v1/setup-codes", api.setup_codes, name="api-setup-codes"),
    path(
        "api/device/v1/setup-codes/options", api.setup_code_options, name="api-setup-code-options"
    ),
    path("api/device/v1/setup-codes/confirm", api.confirm, name="api-confirm"),
    path("api/device/v1/approvals/pending", api.pending, name="api-pending"),
    path("api/device/v1/approvals/answer", api.answer, name="api-answer"),
    path("api/device/v1/account", api.account, name="api-account"),
    path("api/device/v1/remove", api.remove, name="api-remove"),
    path("api/device/v1/screen-lock/options", api.screen_lock_options, name="api-lock-options"),
    path("api/device/v1/screen-lock", api.screen_lock, name="api-lock"),
    path("api/device/v1/approvals/options", api.approval_options, name="api-approval-options"),
    path("api/device/v1/push-subscription", api.push_subscription, name="api-push-subscription"),
    # The phone web app's manifest and service worker (its scope is /verify/).
    path("verify/manifest.webmanifest", views.verify_manifest, name="verify-manifest"),
    path("verify/service-worker.js", views.verify_worker, name="verify-worker"),
]
