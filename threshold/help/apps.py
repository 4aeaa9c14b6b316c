from django.apps import AppConfig


class HelpConfig(AppConfig):
    """Public help: the error catalog's page and the set-up guides."""

    name = "threshold.help"
    label = "help"
