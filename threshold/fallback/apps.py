from django.apps import AppConfig


class FallbackConfig(AppConfig):
    name = "threshold.fallback"
    label = "fallback"
    verbose_name = "Password and authenticator-app fallback"

    def ready(self) -> None:
        from threshold.accounts.methods import register
        from threshold.fallback.methods import PASSWORD_AND_APP

        register(PASSWORD_AND_APP)
