from django.apps import AppConfig


class PasskeysConfig(AppConfig):
    name = "threshold.passkeys"
    label = "passkeys"
