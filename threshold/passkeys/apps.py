from django.apps import AppConfig


class PasskeysConfig(AppConfig):
    name = "threshold.passkeys"
    label = "passkeys"

    def ready(self) -> None:
        from threshold.accounts.methods import register
        from threshold.passkeys.methods import PASSKEYS

        register(PASSKEYS)
