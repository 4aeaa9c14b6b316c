from django.apps import AppConfig


class SelfServiceConfig(AppConfig):
    name = "threshold.selfservice"
    label = "selfservice"
    verbose_name = "Settings and Security Methods"
