from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "threshold.portal"
    label = "portal"
    verbose_name = "Admin portal"
