from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "threshold.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.contrib.auth import user_logged_in
        from django.contrib.auth.models import update_last_login

        # A sign-in already writes Passkey.last_used_at in its transaction;
        # Django's extra UPDATE of User.last_login would be a second write.
        user_logged_in.disconnect(update_last_login, dispatch_uid="update_last_login")
