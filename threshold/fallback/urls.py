from django.urls import path

from threshold.fallback import views

app_name = "fallback"
urlpatterns = [
    path("sign-in/password", views.password_step, name="password"),
    path("sign-in/code", views.code_step, name="code"),
    path("sign-in/set-up-passkey", views.passkey_prompt, name="passkey-prompt"),
    path("settings/verify/password", views.step_up, name="step-up"),
    path("settings/fallback/set-up", views.set_up, name="set-up"),
    path("settings/fallback/recovery-codes", views.new_recovery_codes, name="recovery-codes"),
    path("settings/fallback/remove", views.remove, name="remove"),
]
