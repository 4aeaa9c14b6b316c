from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "threshold.devices"
    label = "devices"
    verbose_name = "Threshold Verify, the device app"

    def ready(self) -> None:
        from threshold.accounts.methods import register
        from threshold.devices.methods import DEVICE_APP

        register(DEVICE_APP)
