from django.apps import AppConfig


class FallbackConfig(AppConfig):
    name = "threshold.fallback"
    label = "fallback"
    verbose_name = "Password and authenticator-app fallback"
